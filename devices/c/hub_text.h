/*
 * hub_text.h - MINIMAL reading of the hub's JSON text messages (protocol.md
 * sections 1 and 3: "welcome", "rejected", "command"). Portable C99, no
 * allocation.
 *
 * This is deliberately not a JSON parser. What it does:
 *   - finds a key of the outermost object and returns the raw text of its value;
 *   - skips nested objects, arrays and strings (with backslash escapes)
 *     correctly, so a "type" inside "params" or inside a string never matches;
 *   - answers "not found" for anything it cannot follow, including a message
 *     that is not one complete object.
 * What it does not do:
 *   - decode escapes: keys and string values are compared byte for byte, so
 *     "comm\u0061nd" is not "command" (the hub writes plain ASCII for these);
 *   - validate numbers, literals, UTF-8, or that brackets pair up by kind.
 * Good enough for messages from the hub; use a real parser for anything else.
 */
#ifndef HUB_TEXT_H
#define HUB_TEXT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HUB_JSON_NONE = 0,      /* not found / not understood */
    HUB_JSON_STRING,        /* ptr/len: the bytes between the quotes, escapes NOT decoded */
    HUB_JSON_NUMBER,        /* ptr/len: the number as written */
    HUB_JSON_OBJECT,        /* ptr/len: from '{' to the matching '}' (can be searched again) */
    HUB_JSON_ARRAY,         /* ptr/len: from '[' to the matching ']' */
    HUB_JSON_LITERAL        /* true, false, null */
} hub_json_kind;

typedef struct {
    hub_json_kind kind;
    const char *ptr;        /* points into the message */
    size_t len;
} hub_json_value;

/* Looks up `key` (NUL-terminated, compared byte for byte) among the members of
 * the outermost object in json[0..len). The first occurrence wins. Returns 1
 * and fills *out, or 0 (and out->kind = HUB_JSON_NONE). */
int hub_json_find(const char *json, size_t len, const char *key, hub_json_value *out);

/* 1 if v is a string whose raw bytes equal `text`. */
int hub_json_string_is(const hub_json_value *v, const char *text);

/* 1 if v is a plain non-negative integer (digits only, no sign, fraction or
 * exponent) that fits in uint64_t; stores it in *out. */
int hub_json_u64(const hub_json_value *v, uint64_t *out);

/* 1 if the message's top-level "type" is the string `type`. */
int hub_text_type_is(const char *msg, size_t len, const char *type);

/* 1 if the message is a command: {"type":"command","id":...,"name":...,...}. */
int hub_text_is_command(const char *msg, size_t len);

/* 1 if the message is the welcome; stores its last_seq (0 if the device has
 * no frames stored yet). The device resumes with seq last_seq + 1. */
int hub_text_welcome_last_seq(const char *msg, size_t len, uint64_t *last_seq);

#ifdef __cplusplus
}
#endif

#endif /* HUB_TEXT_H */
