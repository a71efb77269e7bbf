/*
 * hub_text.c - see hub_text.h: a minimal scanner, not a JSON parser.
 */
#include "hub_text.h"

#include <string.h>

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && is_ws(s[i])) {
        i++;
    }
    return i;
}

/* s[i] is '"'. Returns the index just past the closing quote, or 0 if none. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\') {
            i++;                /* skip the escaped character */
        } else if (s[i] == '"') {
            return i + 1;
        }
    }
    return 0;
}

/* s[i] is '{' or '['. Returns the index just past the matching close, or 0. */
static size_t skip_nested(const char *s, size_t len, size_t i)
{
    size_t depth = 0;
    while (i < len) {
        char c = s[i];
        if (c == '"') {
            i = skip_string(s, len, i);
            if (i == 0) {
                return 0;
            }
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
            if (depth == 0) {
                return i + 1;
            }
        }
        i++;
    }
    return 0;
}

/* Parses the value starting at s[i]; fills *v and returns the index past it, or 0. */
static size_t scan_value(const char *s, size_t len, size_t i, hub_json_value *v)
{
    size_t end;
    char c;
    if (i >= len) {
        return 0;
    }
    c = s[i];
    if (c == '"') {
        end = skip_string(s, len, i);
        if (end == 0) {
            return 0;
        }
        v->kind = HUB_JSON_STRING;
        v->ptr = s + i + 1;
        v->len = end - i - 2;
        return end;
    }
    if (c == '{' || c == '[') {
        end = skip_nested(s, len, i);
        if (end == 0) {
            return 0;
        }
        v->kind = c == '{' ? HUB_JSON_OBJECT : HUB_JSON_ARRAY;
        v->ptr = s + i;
        v->len = end - i;
        return end;
    }
    end = i;
    while (end < len && !is_ws(s[end]) && s[end] != ',' && s[end] != '}' && s[end] != ']') {
        end++;
    }
    if (end == i) {
        return 0;
    }
    v->kind = (c == '-' || (c >= '0' && c <= '9')) ? HUB_JSON_NUMBER : HUB_JSON_LITERAL;
    v->ptr = s + i;
    v->len = end - i;
    return end;
}

int hub_json_find(const char *json, size_t len, const char *key, hub_json_value *out)
{
    hub_json_value found;
    size_t i, key_len;
    int have = 0;

    if (out == NULL) {
        return 0;
    }
    out->kind = HUB_JSON_NONE;
    out->ptr = NULL;
    out->len = 0;
    if (json == NULL || key == NULL) {
        return 0;
    }
    key_len = strlen(key);
    found = *out;

    i = skip_ws(json, len, 0);
    if (i >= len || json[i] != '{') {
        return 0;
    }
    i = skip_ws(json, len, i + 1);
    if (i < len && json[i] == '}') {
        return 0;               /* empty object */
    }
    /* Walk every member, so that only one complete object is accepted. */
    for (;;) {
        hub_json_value k, v;
        size_t next = scan_value(json, len, i, &k);
        if (next == 0 || k.kind != HUB_JSON_STRING) {
            return 0;
        }
        i = skip_ws(json, len, next);
        if (i >= len || json[i] != ':') {
            return 0;
        }
        i = skip_ws(json, len, i + 1);
        next = scan_value(json, len, i, &v);
        if (next == 0) {
            return 0;
        }
        if (!have && k.len == key_len && memcmp(k.ptr, key, key_len) == 0) {
            found = v;
            have = 1;
        }
        i = skip_ws(json, len, next);
        if (i >= len) {
            return 0;
        }
        if (json[i] == ',') {
            i = skip_ws(json, len, i + 1);
            continue;
        }
        if (json[i] != '}') {
            return 0;
        }
        break;
    }
    if (skip_ws(json, len, i + 1) != len || !have) {
        return 0;               /* something after the object, or no such key */
    }
    *out = found;
    return 1;
}

int hub_json_string_is(const hub_json_value *v, const char *text)
{
    size_t n;
    if (v == NULL || text == NULL || v->kind != HUB_JSON_STRING) {
        return 0;
    }
    n = strlen(text);
    return v->len == n && memcmp(v->ptr, text, n) == 0;
}

int hub_json_u64(const hub_json_value *v, uint64_t *out)
{
    uint64_t n = 0;
    size_t i;
    if (v == NULL || out == NULL || v->kind != HUB_JSON_NUMBER || v->len == 0) {
        return 0;
    }
    for (i = 0; i < v->len; i++) {
        unsigned d;
        if (v->ptr[i] < '0' || v->ptr[i] > '9') {
            return 0;
        }
        d = (unsigned)(v->ptr[i] - '0');
        if (n > (UINT64_MAX - d) / 10) {
            return 0;           /* overflow */
        }
        n = n * 10 + d;
    }
    *out = n;
    return 1;
}

int hub_text_type_is(const char *msg, size_t len, const char *type)
{
    hub_json_value v;
    return hub_json_find(msg, len, "type", &v) && hub_json_string_is(&v, type);
}

int hub_text_is_command(const char *msg, size_t len)
{
    return hub_text_type_is(msg, len, "command");
}

int hub_text_welcome_last_seq(const char *msg, size_t len, uint64_t *last_seq)
{
    hub_json_value v;
    if (!hub_text_type_is(msg, len, "welcome")) {
        return 0;
    }
    return hub_json_find(msg, len, "last_seq", &v) && hub_json_u64(&v, last_seq);
}
