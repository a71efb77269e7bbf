/*
 * hub_frame.c - see hub_frame.h. Portable C99, no allocation.
 */
#include "hub_frame.h"

#include <string.h>

/* The f64 value is the IEEE 754 binary64 bit pattern of a C double. */
typedef char hub_double_is_64_bits[(sizeof(double) == 8) ? 1 : -1];

/* ---- errors ---------------------------------------------------------- */

static const char *const hub_err_text[HUB_ERR_COUNT_] = {
    "ok",
    "truncated",
    "unsupported version",
    "unknown kind",
    "seq out of range 1..2^63-1",
    "negative base_time",
    "zero readings",
    "metric name length not 1..64",
    "metric name character not in [A-Za-z0-9._/:-]",
    "unknown value type",
    "f64 not finite",
    "bool not 0 or 1",
    "string longer than 1024 bytes",
    "string not valid UTF-8",
    "string contains U+0000",
    "reading time outside epoch..end of year 9999",
    "trailing bytes",
    "buffer too small",
    "more than 65535 readings",
    "invalid argument"
};

const char *hub_strerror(hub_err err)
{
    if ((int)err < 0 || (int)err >= (int)HUB_ERR_COUNT_) {
        return "unknown error";
    }
    return hub_err_text[err] != NULL ? hub_err_text[err] : "unknown error";
}

/* ---- big-endian helpers ---------------------------------------------- */

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(((unsigned)p[0] << 8) | (unsigned)p[1]);
}

static uint32_t get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
    return ((uint64_t)get_u32(p) << 32) | (uint64_t)get_u32(p + 4);
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)(v >> 32));
    put_u32(p + 4, (uint32_t)v);
}

/* Two's complement reinterpretation without implementation-defined casts. */
static int64_t to_i64(uint64_t u)
{
    return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

static int32_t to_i32(uint32_t u)
{
    return u <= (uint32_t)INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

static uint64_t f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double f64_from_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* ---- rules ----------------------------------------------------------- */

static int is_name_char(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '/' || c == ':' || c == '-';
}

static hub_err check_name(const uint8_t *name, size_t len)
{
    size_t i;
    if (len < 1 || len > HUB_NAME_MAX) {
        return HUB_ERR_NAME_LENGTH;
    }
    for (i = 0; i < len; i++) {
        if (!is_name_char(name[i])) {
            return HUB_ERR_NAME_CHAR;
        }
    }
    return HUB_OK;
}

static int f64_is_finite(uint64_t bits)
{
    return ((bits >> 52) & 0x7ff) != 0x7ff;
}

/* Well-formed UTF-8 per Unicode table 3-7 (no overlongs, no surrogates,
 * nothing above U+10FFFF), and no U+0000. */
static hub_err check_utf8(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf;   /* allowed range of the second byte */
        if (c == 0x00) {
            return HUB_ERR_STRING_NUL;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0) {
                lo = 0xa0;          /* overlong */
            } else if (c == 0xed) {
                hi = 0x9f;          /* surrogates */
            }
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0) {
                lo = 0x90;          /* overlong */
            } else if (c == 0xf4) {
                hi = 0x8f;          /* above U+10FFFF */
            }
        } else {
            return HUB_ERR_STRING_UTF8;  /* 80..C1 (continuation, overlong), F5..FF */
        }
        if (len - i - 1 < need) {
            return HUB_ERR_STRING_UTF8;
        }
        if (s[i + 1] < lo || s[i + 1] > hi) {
            return HUB_ERR_STRING_UTF8;
        }
        {
            size_t k;
            for (k = 2; k <= need; k++) {
                if (s[i + k] < 0x80 || s[i + k] > 0xbf) {
                    return HUB_ERR_STRING_UTF8;
                }
            }
        }
        i += need + 1;
    }
    return HUB_OK;
}

/* t = base + offset, within [0, HUB_TIME_LIMIT_US); never overflows. */
static hub_err reading_time(int64_t base, int32_t offset, int64_t *t)
{
    const int64_t margin = INT64_C(0x80000000);
    if (base > INT64_MAX - margin || base < INT64_MIN + margin) {
        return HUB_ERR_TIME_RANGE;
    }
    *t = base + offset;
    if (*t < 0 || *t >= HUB_TIME_LIMIT_US) {
        return HUB_ERR_TIME_RANGE;
    }
    return HUB_OK;
}

/* ---- decoding -------------------------------------------------------- */

/* Parses and validates the reading at p[0..avail); *used = its length. */
static hub_err parse_reading(const uint8_t *p, size_t avail, int64_t time_base,
                             hub_reading *r, size_t *used)
{
    size_t pos, name_len;
    hub_err err;
    uint8_t type;

    if (avail < 1) {
        return HUB_ERR_TRUNCATED;
    }
    name_len = p[0];
    if (name_len < 1 || name_len > HUB_NAME_MAX) {
        return HUB_ERR_NAME_LENGTH;
    }
    if (avail - 1 < name_len) {
        return HUB_ERR_TRUNCATED;
    }
    err = check_name(p + 1, name_len);
    if (err != HUB_OK) {
        return err;
    }
    r->name = (const char *)(p + 1);
    r->name_len = name_len;
    pos = 1 + name_len;

    if (avail - pos < 5) {
        return HUB_ERR_TRUNCATED;
    }
    r->offset_us = to_i32(get_u32(p + pos));
    type = p[pos + 4];
    pos += 5;
    if (type < HUB_VALUE_F64 || type > HUB_VALUE_STRING) {
        return HUB_ERR_VALUE_TYPE;
    }
    r->type = (hub_value_type)type;

    switch (r->type) {
    case HUB_VALUE_F64: {
        uint64_t bits;
        if (avail - pos < 8) {
            return HUB_ERR_TRUNCATED;
        }
        bits = get_u64(p + pos);
        if (!f64_is_finite(bits)) {
            return HUB_ERR_NOT_FINITE;
        }
        r->value.f64 = f64_from_bits(bits);
        pos += 8;
        break;
    }
    case HUB_VALUE_I64:
        if (avail - pos < 8) {
            return HUB_ERR_TRUNCATED;
        }
        r->value.i64 = to_i64(get_u64(p + pos));
        pos += 8;
        break;
    case HUB_VALUE_BOOL:
        if (avail - pos < 1) {
            return HUB_ERR_TRUNCATED;
        }
        if (p[pos] > 1) {
            return HUB_ERR_BOOL;
        }
        r->value.boolean = p[pos];
        pos += 1;
        break;
    case HUB_VALUE_STRING: {
        size_t slen;
        if (avail - pos < 2) {
            return HUB_ERR_TRUNCATED;
        }
        slen = get_u16(p + pos);
        pos += 2;
        if (slen > HUB_STRING_MAX) {
            return HUB_ERR_STRING_LENGTH;
        }
        if (avail - pos < slen) {
            return HUB_ERR_TRUNCATED;
        }
        err = check_utf8(p + pos, slen);
        if (err != HUB_OK) {
            return err;
        }
        r->value.string.ptr = (const char *)(p + pos);
        r->value.string.len = slen;
        pos += slen;
        break;
    }
    }

    err = reading_time(time_base, r->offset_us, &r->time_us);
    if (err != HUB_OK) {
        return err;
    }
    *used = pos;
    return HUB_OK;
}

hub_err hub_frame_decode(const uint8_t *buf, size_t len, int64_t receive_time_us,
                         hub_frame *out)
{
    uint64_t seq;
    size_t pos;
    uint16_t i;

    if (out == NULL || (buf == NULL && len > 0)) {
        return HUB_ERR_ARGUMENT;
    }
    memset(out, 0, sizeof *out);

    /* Check each header field as soon as its bytes are there, so the reason
     * names the first thing wrong rather than just "truncated". */
    if (len < 1) {
        return HUB_ERR_TRUNCATED;
    }
    if (buf[0] != HUB_FRAME_VERSION) {
        return HUB_ERR_VERSION;
    }
    if (len < 2) {
        return HUB_ERR_TRUNCATED;
    }
    if (buf[1] != HUB_KIND_TELEMETRY) {
        return HUB_ERR_KIND;
    }
    if (len < 10) {
        return HUB_ERR_TRUNCATED;
    }
    seq = get_u64(buf + 2);
    if (seq < 1 || seq > HUB_SEQ_MAX) {
        return HUB_ERR_SEQ;
    }
    out->seq = seq;
    if (len < HUB_FRAME_HEADER_LEN) {
        return HUB_ERR_TRUNCATED;
    }
    out->base_time_us = to_i64(get_u64(buf + 10));
    if (out->base_time_us < 0) {
        return HUB_ERR_BASE_TIME;
    }
    out->time_base_us = out->base_time_us != 0 ? out->base_time_us : receive_time_us;
    out->count = get_u16(buf + 18);
    if (out->count < 1) {
        return HUB_ERR_NO_READINGS;
    }

    pos = HUB_FRAME_HEADER_LEN;
    for (i = 0; i < out->count; i++) {
        hub_reading r;
        size_t used = 0;
        hub_err err = parse_reading(buf + pos, len - pos, out->time_base_us, &r, &used);
        if (err != HUB_OK) {
            return err;
        }
        pos += used;
    }
    if (pos != len) {
        return HUB_ERR_TRAILING;
    }
    out->readings = buf + HUB_FRAME_HEADER_LEN;
    out->readings_len = len - HUB_FRAME_HEADER_LEN;
    return HUB_OK;
}

void hub_frame_iter(const hub_frame *frame, hub_reading_iter *it)
{
    it->pos = frame->readings;
    it->end = frame->readings + frame->readings_len;
    it->left = frame->readings != NULL ? frame->count : 0;
    it->time_base_us = frame->time_base_us;
}

int hub_reading_next(hub_reading_iter *it, hub_reading *out)
{
    size_t used = 0;
    if (it->left == 0) {
        return 0;
    }
    /* The frame was validated by hub_frame_decode; re-parsing is cheap and
     * keeps the iterator safe even if misused. */
    if (parse_reading(it->pos, (size_t)(it->end - it->pos), it->time_base_us, out, &used) != HUB_OK) {
        it->left = 0;
        return 0;
    }
    it->pos += used;
    it->left--;
    return 1;
}

/* ---- building -------------------------------------------------------- */

hub_err hub_frame_begin(hub_builder *b, uint8_t *buf, size_t cap,
                        uint64_t seq, int64_t base_time_us)
{
    if (b == NULL) {
        return HUB_ERR_ARGUMENT;
    }
    memset(b, 0, sizeof *b);
    if (buf == NULL) {
        b->err = HUB_ERR_ARGUMENT;
    } else if (seq < 1 || seq > HUB_SEQ_MAX) {
        b->err = HUB_ERR_SEQ;
    } else if (base_time_us < 0) {
        b->err = HUB_ERR_BASE_TIME;
    } else if (cap < HUB_FRAME_HEADER_LEN) {
        b->err = HUB_ERR_NO_SPACE;
    }
    if (b->err != HUB_OK) {
        return b->err;
    }
    b->buf = buf;
    b->cap = cap;
    b->base_time_us = base_time_us;
    buf[0] = HUB_FRAME_VERSION;
    buf[1] = HUB_KIND_TELEMETRY;
    put_u64(buf + 2, seq);
    put_u64(buf + 10, (uint64_t)base_time_us);
    put_u16(buf + 18, 0);
    b->len = HUB_FRAME_HEADER_LEN;
    return HUB_OK;
}

/* Checks everything common to all value types and returns the name length. */
static hub_err begin_reading(const hub_builder *b, const char *name, int32_t offset_us,
                             size_t *name_len)
{
    size_t n = 0;
    hub_err err;
    if (b == NULL || name == NULL) {
        return HUB_ERR_ARGUMENT;
    }
    if (b->err != HUB_OK) {
        return b->err;
    }
    if (b->buf == NULL) {
        return HUB_ERR_ARGUMENT;
    }
    if (b->count >= HUB_READINGS_MAX) {
        return HUB_ERR_TOO_MANY_READINGS;
    }
    while (n <= HUB_NAME_MAX && name[n] != '\0') {
        n++;
    }
    err = check_name((const uint8_t *)name, n);
    if (err != HUB_OK) {
        return err;
    }
    if (b->base_time_us != 0) {
        int64_t t;
        err = reading_time(b->base_time_us, offset_us, &t);
        if (err != HUB_OK) {
            return err;
        }
    }
    *name_len = n;
    return HUB_OK;
}

/* Writes name, offset and type; the caller has checked the space. */
static uint8_t *write_reading_head(hub_builder *b, const char *name, size_t name_len,
                                   int32_t offset_us, hub_value_type type)
{
    uint8_t *p = b->buf + b->len;
    p[0] = (uint8_t)name_len;
    memcpy(p + 1, name, name_len);
    put_u32(p + 1 + name_len, (uint32_t)offset_us);
    p[1 + name_len + 4] = (uint8_t)type;
    return p + 1 + name_len + 5;
}

static void end_reading(hub_builder *b, size_t reading_len)
{
    b->len += reading_len;
    b->count++;
    put_u16(b->buf + 18, b->count);
}

/* value_err: the verdict on the value itself, reported after the common checks. */
static hub_err add_fixed(hub_builder *b, const char *name, int32_t offset_us,
                         hub_value_type type, uint64_t value, size_t value_len,
                         hub_err value_err)
{
    size_t name_len = 0, need;
    uint8_t *p;
    hub_err err = begin_reading(b, name, offset_us, &name_len);
    if (err != HUB_OK) {
        return err;
    }
    if (value_err != HUB_OK) {
        return value_err;
    }
    need = 1 + name_len + 5 + value_len;
    if (b->cap - b->len < need) {
        return HUB_ERR_NO_SPACE;
    }
    p = write_reading_head(b, name, name_len, offset_us, type);
    if (value_len == 8) {
        put_u64(p, value);
    } else {
        p[0] = (uint8_t)value;
    }
    end_reading(b, need);
    return HUB_OK;
}

hub_err hub_frame_add_f64(hub_builder *b, const char *name, int32_t offset_us, double value)
{
    uint64_t bits = f64_bits(value);
    return add_fixed(b, name, offset_us, HUB_VALUE_F64, bits, 8,
                     f64_is_finite(bits) ? HUB_OK : HUB_ERR_NOT_FINITE);
}

hub_err hub_frame_add_i64(hub_builder *b, const char *name, int32_t offset_us, int64_t value)
{
    return add_fixed(b, name, offset_us, HUB_VALUE_I64, (uint64_t)value, 8, HUB_OK);
}

hub_err hub_frame_add_bool(hub_builder *b, const char *name, int32_t offset_us, int value)
{
    return add_fixed(b, name, offset_us, HUB_VALUE_BOOL, value != 0 ? 1u : 0u, 1, HUB_OK);
}

hub_err hub_frame_add_string_n(hub_builder *b, const char *name, int32_t offset_us,
                               const char *value, size_t len)
{
    size_t name_len = 0, need;
    uint8_t *p;
    hub_err err = begin_reading(b, name, offset_us, &name_len);
    if (err != HUB_OK) {
        return err;
    }
    if (value == NULL && len > 0) {
        return HUB_ERR_ARGUMENT;
    }
    if (len > HUB_STRING_MAX) {
        return HUB_ERR_STRING_LENGTH;
    }
    if (len > 0) {
        err = check_utf8((const uint8_t *)value, len);
        if (err != HUB_OK) {
            return err;
        }
    }
    need = 1 + name_len + 5 + 2 + len;
    if (b->cap - b->len < need) {
        return HUB_ERR_NO_SPACE;
    }
    p = write_reading_head(b, name, name_len, offset_us, HUB_VALUE_STRING);
    put_u16(p, (uint16_t)len);
    if (len > 0) {
        memcpy(p + 2, value, len);
    }
    end_reading(b, need);
    return HUB_OK;
}

hub_err hub_frame_add_string(hub_builder *b, const char *name, int32_t offset_us,
                             const char *value)
{
    size_t len = 0;
    if (value == NULL) {
        return HUB_ERR_ARGUMENT;
    }
    /* Bounded scan: a longer string is rejected without reading all of it. */
    while (len <= HUB_STRING_MAX && value[len] != '\0') {
        len++;
    }
    return hub_frame_add_string_n(b, name, offset_us, value, len);
}

hub_err hub_frame_finish(const hub_builder *b, size_t *out_len)
{
    if (b == NULL || out_len == NULL) {
        return HUB_ERR_ARGUMENT;
    }
    if (b->err != HUB_OK) {
        return b->err;
    }
    if (b->buf == NULL) {
        return HUB_ERR_ARGUMENT;
    }
    if (b->count == 0) {
        return HUB_ERR_NO_READINGS;
    }
    *out_len = b->len;
    return HUB_OK;
}

/* ---- acks ------------------------------------------------------------ */

hub_err hub_ack_encode(uint64_t seq, uint8_t out[HUB_ACK_LEN])
{
    if (out == NULL) {
        return HUB_ERR_ARGUMENT;
    }
    if (seq < 1 || seq > HUB_SEQ_MAX) {
        return HUB_ERR_SEQ;
    }
    out[0] = HUB_FRAME_VERSION;
    out[1] = HUB_KIND_ACK;
    put_u64(out + 2, seq);
    return HUB_OK;
}

hub_err hub_ack_decode(const uint8_t *buf, size_t len, uint64_t *seq)
{
    uint64_t s;
    if (seq == NULL || (buf == NULL && len > 0)) {
        return HUB_ERR_ARGUMENT;
    }
    if (len >= 1 && buf[0] != HUB_FRAME_VERSION) {
        return HUB_ERR_VERSION;
    }
    if (len >= 2 && buf[1] != HUB_KIND_ACK) {
        return HUB_ERR_KIND;
    }
    if (len < HUB_ACK_LEN) {
        return HUB_ERR_TRUNCATED;
    }
    if (len > HUB_ACK_LEN) {
        return HUB_ERR_TRAILING;
    }
    s = get_u64(buf + 2);
    if (s < 1 || s > HUB_SEQ_MAX) {
        return HUB_ERR_SEQ;
    }
    *seq = s;
    return HUB_OK;
}
