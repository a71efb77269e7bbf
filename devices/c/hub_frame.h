/*
 * hub_frame.h - telemetry frames and acks of the hub wire contract, version 1
 * (protocol.md section 2), in portable C99.
 *
 * No allocation, no I/O, no globals: the caller owns every buffer. Decoded
 * readings point into the caller's input buffer (nothing is copied), so that
 * buffer must outlive them.
 *
 * Needs an IEEE 754 binary64 `double` (checked at compile time; AVR boards,
 * where double is 32 bits, are not supported).
 */
#ifndef HUB_FRAME_H
#define HUB_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- wire constants -------------------------------------------------- */

#define HUB_FRAME_VERSION        1
#define HUB_KIND_TELEMETRY       0x01
#define HUB_KIND_ACK             0x81
#define HUB_FRAME_HEADER_LEN     20      /* version, kind, seq, base_time, count */
#define HUB_ACK_LEN              10      /* 01 81 <u64 seq> */
#define HUB_NAME_MAX             64
#define HUB_STRING_MAX           1024
#define HUB_READINGS_MAX         65535   /* count is a u16 */
#define HUB_SEQ_MAX              UINT64_C(0x7fffffffffffffff)   /* 2^63-1 */
/* First microsecond after the end of year 9999 UTC: reading times must be below it. */
#define HUB_TIME_LIMIT_US        INT64_C(253402300800000000)
/* The hub's default max_frame_bytes (announced in the welcome message). */
#define HUB_MAX_FRAME_BYTES      65536

/* Encoded size of one reading, for sizing static buffers. */
#define HUB_READING_LEN_F64(name_len)            (1u + (name_len) + 4u + 1u + 8u)
#define HUB_READING_LEN_I64(name_len)            (1u + (name_len) + 4u + 1u + 8u)
#define HUB_READING_LEN_BOOL(name_len)           (1u + (name_len) + 4u + 1u + 1u)
#define HUB_READING_LEN_STRING(name_len, bytes)  (1u + (name_len) + 4u + 1u + 2u + (bytes))

/* ---- errors ---------------------------------------------------------- */

/* Error codes. The numbers and the hub_strerror() texts are stable. */
typedef enum {
    HUB_OK = 0,
    HUB_ERR_TRUNCATED,          /* the data ends inside the header or a reading */
    HUB_ERR_VERSION,            /* version byte is not 1 */
    HUB_ERR_KIND,               /* kind byte is not 0x01 (frame) / 0x81 (ack) */
    HUB_ERR_SEQ,                /* seq is 0 or above 2^63-1 */
    HUB_ERR_BASE_TIME,          /* base_time is negative */
    HUB_ERR_NO_READINGS,        /* count is 0 */
    HUB_ERR_NAME_LENGTH,        /* metric name is not 1..64 bytes */
    HUB_ERR_NAME_CHAR,          /* metric name has a byte outside [A-Za-z0-9._/:-] */
    HUB_ERR_VALUE_TYPE,         /* value type is not 1..4 */
    HUB_ERR_NOT_FINITE,         /* f64 is NaN or infinite */
    HUB_ERR_BOOL,               /* bool byte is not 0 or 1 */
    HUB_ERR_STRING_LENGTH,      /* string longer than 1024 bytes */
    HUB_ERR_STRING_UTF8,        /* string is not valid UTF-8 */
    HUB_ERR_STRING_NUL,         /* string contains U+0000 */
    HUB_ERR_TIME_RANGE,         /* reading time outside [epoch, end of year 9999) */
    HUB_ERR_TRAILING,           /* bytes after the last reading (or after an ack) */
    HUB_ERR_NO_SPACE,           /* builder: the caller's buffer is too small */
    HUB_ERR_TOO_MANY_READINGS,  /* builder: more than 65535 readings */
    HUB_ERR_ARGUMENT,           /* a NULL pointer, or a builder that failed to begin */
    HUB_ERR_COUNT_              /* number of codes; not an error */
} hub_err;

/* A short, stable, human-readable reason ("metric name length not 1..64", ...).
 * Never NULL; unknown codes give "unknown error". */
const char *hub_strerror(hub_err err);

/* ---- values ---------------------------------------------------------- */

typedef enum {
    HUB_VALUE_F64 = 1,
    HUB_VALUE_I64 = 2,
    HUB_VALUE_BOOL = 3,
    HUB_VALUE_STRING = 4
} hub_value_type;

/* ---- building frames ------------------------------------------------- */

/* Builder state: a few words, no hidden buffers. After every successful add the
 * buffer holds a complete, valid frame of the readings added so far. */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    uint16_t count;
    int64_t base_time_us;
    hub_err err;            /* set when hub_frame_begin failed */
} hub_builder;

/* Starts a frame in buf[0..cap). seq must be 1..2^63-1, base_time_us >= 0
 * (0 = "the hub stamps the frame with its receive time"). Needs cap >= 20.
 * On failure the builder stays unusable and every later call returns the error. */
hub_err hub_frame_begin(hub_builder *b, uint8_t *buf, size_t cap,
                        uint64_t seq, int64_t base_time_us);

/* Append one reading. `name` is a NUL-terminated metric name (1..64 bytes of
 * [A-Za-z0-9._/:-]). Every rule of the contract is checked, including the
 * reading time when base_time != 0. On any error nothing is written and the
 * frame built so far stays valid, so on HUB_ERR_NO_SPACE a caller can finish,
 * send, and start the next frame. */
hub_err hub_frame_add_f64(hub_builder *b, const char *name, int32_t offset_us, double value);
hub_err hub_frame_add_i64(hub_builder *b, const char *name, int32_t offset_us, int64_t value);
/* Any nonzero value is encoded as true (1). */
hub_err hub_frame_add_bool(hub_builder *b, const char *name, int32_t offset_us, int value);
/* value: NUL-terminated UTF-8, at most 1024 bytes. */
hub_err hub_frame_add_string(hub_builder *b, const char *name, int32_t offset_us,
                             const char *value);
/* value: `len` bytes of UTF-8 (no U+0000), len <= 1024; value may be NULL if len == 0. */
hub_err hub_frame_add_string_n(hub_builder *b, const char *name, int32_t offset_us,
                               const char *value, size_t len);

/* Completes the frame: *out_len = its length in bytes (buf[0..*out_len) is the
 * WebSocket binary message). Fails with HUB_ERR_NO_READINGS if nothing was added.
 * The builder is not consumed: more readings may still be added afterwards. */
hub_err hub_frame_finish(const hub_builder *b, size_t *out_len);

/* ---- decoding frames ------------------------------------------------- */

/* A validated frame. `readings` points into the decoded buffer. */
typedef struct {
    uint64_t seq;
    int64_t base_time_us;       /* as on the wire; 0 = hub receive time */
    int64_t time_base_us;       /* base_time_us, or the receive time when that is 0 */
    uint16_t count;
    const uint8_t *readings;    /* first reading, inside the input buffer */
    size_t readings_len;
} hub_frame;

/* One reading. Pointers point into the decoded buffer; name and string are
 * NOT NUL-terminated: use the lengths. */
typedef struct {
    const char *name;
    size_t name_len;
    int32_t offset_us;
    int64_t time_us;            /* time_base_us + offset_us, already range-checked */
    hub_value_type type;
    union {
        double f64;
        int64_t i64;
        int boolean;            /* 0 or 1 */
        struct {
            const char *ptr;
            size_t len;
        } string;
    } value;
} hub_reading;

/* Validates a whole frame against every rule of the contract (section 2) and
 * fills *out. receive_time_us is the time used when base_time is 0: the hub
 * uses its receive time, so pass yours (microseconds since the epoch); it is
 * ignored when base_time != 0.
 *
 * On error, out->seq is still set when the frame starts with version 1, kind
 * 0x01 and a seq in range (the `seq` of the hub's "rejected" message), else 0. */
hub_err hub_frame_decode(const uint8_t *buf, size_t len, int64_t receive_time_us,
                         hub_frame *out);

/* Iteration over the readings of a frame that hub_frame_decode accepted. */
typedef struct {
    const uint8_t *pos;
    const uint8_t *end;
    uint16_t left;
    int64_t time_base_us;
} hub_reading_iter;

void hub_frame_iter(const hub_frame *frame, hub_reading_iter *it);
/* Returns 1 and fills *out with the next reading, or 0 at the end. */
int hub_reading_next(hub_reading_iter *it, hub_reading *out);

/* ---- acks (hub to device) -------------------------------------------- */

/* Writes the 10-byte ack `01 81 <u64 seq>`; seq must be 1..2^63-1. */
hub_err hub_ack_encode(uint64_t seq, uint8_t out[HUB_ACK_LEN]);
/* Parses an ack: exactly 10 bytes, version 1, kind 0x81, seq 1..2^63-1.
 * An ack for seq N covers every frame of this device with seq <= N. */
hub_err hub_ack_decode(const uint8_t *buf, size_t len, uint64_t *seq);

#ifdef __cplusplus
}
#endif

#endif /* HUB_FRAME_H */
