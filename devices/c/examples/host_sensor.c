/*
 * host_sensor.c - a fake sensor that streams telemetry to the hub.
 *
 *   host_sensor HOST PORT DEVICE_ID TOKEN [FRAMES]
 *
 * Connects to ws://HOST:PORT/devices/DEVICE_ID with "Authorization: Bearer
 * TOKEN", reads the welcome, and sends one frame per interval (1 s; the hub
 * can change it with the command set_interval {"seconds":N}) with seq
 * last_seq+1, last_seq+2, ... It prints acks, rejections and commands, and
 * answers pings. With FRAMES it stops after that many frames, once the last
 * one is acked, and closes cleanly; otherwise it runs until Ctrl-C.
 *
 * It keeps nothing for resending: frames not acked when the connection drops
 * are lost (see esp32_sensor.ino for a device that resends them).
 *
 * The WebSocket client here is the smallest one that follows RFC 6455 for
 * this use: plain TCP (no TLS), client frames masked with fresh random keys,
 * Sec-WebSocket-Accept checked, fragmented messages reassembled, ping/close
 * answered. No extensions, no subprotocol. All buffers are static: nothing
 * is allocated per frame.
 *
 * POSIX: build with -D_POSIX_C_SOURCE=200809L (`make example`).
 */
#include "hub_frame.h"
#include "hub_text.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define FRAME_CAP       512             /* one telemetry frame */
#define MSG_CAP         16384           /* largest hub message we accept */
#define RX_CAP          (MSG_CAP + 14)  /* one frame: header + payload */
#define TX_CAP          (14 + 2048)     /* one outgoing WebSocket frame */
#define HANDSHAKE_CAP   4096
#define TIMEOUT_MS      10000           /* handshake, welcome, closing */

enum { OP_CONT = 0x0, OP_TEXT = 0x1, OP_BINARY = 0x2, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xA };

static int g_fd = -1;
static int g_urandom = -1;
static volatile sig_atomic_t g_interrupted;

static uint8_t g_rx[RX_CAP];            /* bytes received, not yet parsed */
static size_t g_rx_len;
static uint8_t g_msg[MSG_CAP];          /* a fragmented message being reassembled */
static size_t g_msg_len;
static int g_msg_opcode = -1;           /* -1: no fragmented message in progress */
static uint8_t g_tx[TX_CAP];
static uint8_t g_frame[FRAME_CAP];
static char g_text[1024];

/* ---- small utilities -------------------------------------------------- */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "host_sensor: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static int64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Masking keys must be unpredictable (RFC 6455 section 5.3). */
static void random_bytes(uint8_t *out, size_t n)
{
    while (n > 0) {
        ssize_t r = read(g_urandom, out, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            die("cannot read /dev/urandom");
        }
        out += r;
        n -= (size_t)r;
    }
}

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

/* ---- SHA-1 and base64, for the handshake only ------------------------- */

static uint32_t rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80], a, b, c, d, e;
    unsigned i;
    for (i = 0; i < 16; i++) {
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
               ((uint32_t)p[4 * i + 2] << 8) | (uint32_t)p[4 * i + 3];
    }
    for (i = 16; i < 80; i++) {
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4];
    for (i = 0; i < 80; i++) {
        uint32_t f, k, t;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999u;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1u;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdcu;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6u;
        }
        t = rol32(a, 5) + f + e + k + w[i];
        e = d; d = c; c = rol32(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static void sha1(const uint8_t *data, size_t len, uint8_t out[20])
{
    uint32_t h[5] = { 0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u };
    uint8_t last[128];
    uint64_t bits = (uint64_t)len * 8;
    size_t rest, total, i;
    while (len >= 64) {
        sha1_block(h, data);
        data += 64;
        len -= 64;
    }
    rest = len;
    memset(last, 0, sizeof last);
    memcpy(last, data, rest);
    last[rest] = 0x80;
    total = rest + 1 + 8 <= 64 ? 64 : 128;
    for (i = 0; i < 8; i++) {
        last[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    }
    sha1_block(h, last);
    if (total == 128) {
        sha1_block(h, last + 64);
    }
    for (i = 0; i < 20; i++) {
        out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
    }
}

static void base64(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = tab[(v >> 6) & 63];
        *out++ = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

/* ---- socket I/O ------------------------------------------------------- */

static void send_all(const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(g_fd, p, n, 0);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("send: %s", strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Waits up to timeout_ms for data, then reads what fits into g_rx.
 * Returns the number of bytes read (0 on timeout or signal). */
static size_t receive_some(int timeout_ms)
{
    struct pollfd pfd;
    ssize_t r;
    pfd.fd = g_fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (poll(&pfd, 1, timeout_ms < 0 ? 0 : timeout_ms) <= 0) {
        return 0;
    }
    if (g_rx_len == sizeof g_rx) {
        die("receive buffer full");     /* cannot happen: frames are bounded */
    }
    r = recv(g_fd, g_rx + g_rx_len, sizeof g_rx - g_rx_len, 0);
    if (r < 0) {
        if (errno == EINTR) {
            return 0;
        }
        die("recv: %s", strerror(errno));
    }
    if (r == 0) {
        die("the hub closed the TCP connection without a close frame");
    }
    g_rx_len += (size_t)r;
    return (size_t)r;
}

static void connect_tcp(const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    int rc;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        die("cannot resolve %s: %s", host, gai_strerror(rc));
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        g_fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (g_fd < 0) {
            continue;
        }
        if (connect(g_fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        close(g_fd);
        g_fd = -1;
    }
    freeaddrinfo(res);
    if (g_fd < 0) {
        die("cannot connect to %s port %s", host, port);
    }
}

/* ---- WebSocket -------------------------------------------------------- */

/* Sends one unfragmented, masked client frame. */
static void ws_send(int opcode, const uint8_t *payload, size_t len)
{
    size_t h = 0, i;
    uint8_t *mask;
    if (len > sizeof g_tx - 14) {
        die("outgoing message too large");
    }
    g_tx[h++] = (uint8_t)(0x80 | opcode);   /* FIN */
    if (len < 126) {
        g_tx[h++] = (uint8_t)(0x80 | len);  /* MASK bit */
    } else {
        g_tx[h++] = 0x80 | 126;
        g_tx[h++] = (uint8_t)(len >> 8);
        g_tx[h++] = (uint8_t)len;
    }
    mask = g_tx + h;
    random_bytes(mask, 4);
    h += 4;
    for (i = 0; i < len; i++) {
        g_tx[h + i] = payload[i] ^ mask[i & 3];
    }
    send_all(g_tx, h + len);
}

static void ws_send_text(const char *text)
{
    ws_send(OP_TEXT, (const uint8_t *)text, strlen(text));
}

static void ws_send_close(unsigned code)
{
    uint8_t p[2];
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    ws_send(OP_CLOSE, p, 2);
}

static int valid_device_id(const char *id)
{
    size_t n;
    int all_dots = 1;
    for (n = 0; id[n] != '\0'; n++) {
        char c = id[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return 0;
        }
        all_dots &= c == '.';
    }
    return n >= 1 && n <= 64 && !all_dots;
}

/* Case-insensitive: does the comma-separated header value contain token? */
static int header_has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token), i = 0;
    while (i < len) {
        size_t start, end;
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ',')) {
            i++;
        }
        start = i;
        while (i < len && value[i] != ',') {
            i++;
        }
        end = i;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t')) {
            end--;
        }
        if (end - start == tlen && strncasecmp(value + start, token, tlen) == 0) {
            return 1;
        }
    }
    return 0;
}

static void ws_handshake(const char *host, const char *port, const char *device, const char *token)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    static char request[1024];
    static char head[HANDSHAKE_CAP + 1];
    uint8_t nonce[16], digest[20];
    char key[32], accept[32], key_guid[64];
    char *line, *eol;
    int n, status = 0, upgrade_ok = 0, connection_ok = 0, accept_ok = 0;
    int64_t deadline = monotonic_ms() + TIMEOUT_MS;
    size_t head_len = 0;

    random_bytes(nonce, sizeof nonce);
    base64(nonce, sizeof nonce, key);
    n = snprintf(request, sizeof request,
                 "GET /devices/%s HTTP/1.1\r\n"
                 "Host: %s%s%s:%s\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Authorization: Bearer %s\r\n"
                 "\r\n",
                 device, strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port, key, token);
    if (n < 0 || (size_t)n >= sizeof request) {
        die("request too long");
    }
    send_all((const uint8_t *)request, (size_t)n);

    /* Read up to the blank line; bytes after it are already WebSocket data. */
    while (head_len == 0) {
        size_t i;
        for (i = 0; i + 3 < g_rx_len && i + 4 <= HANDSHAKE_CAP; i++) {
            if (memcmp(g_rx + i, "\r\n\r\n", 4) == 0) {
                head_len = i + 4;
                break;
            }
        }
        if (head_len == 0) {
            if (g_rx_len >= HANDSHAKE_CAP) {
                die("HTTP response head too large");
            }
            if (monotonic_ms() > deadline) {
                die("no HTTP response within %d ms", TIMEOUT_MS);
            }
            receive_some(500);
        }
    }
    if (memchr(g_rx, 0, head_len) != NULL) {
        die("NUL byte in the HTTP response");
    }
    memcpy(head, g_rx, head_len);
    head[head_len] = '\0';
    memmove(g_rx, g_rx + head_len, g_rx_len - head_len);
    g_rx_len -= head_len;

    eol = strstr(head, "\r\n");
    *eol = '\0';
    if (sscanf(head, "HTTP/1.1 %d", &status) != 1 || status != 101) {
        fprintf(stderr, "host_sensor: upgrade refused: %s\n", head);
        if (status == 400) {
            fprintf(stderr, "  (400: malformed device id or request)\n");
        } else if (status == 401) {
            fprintf(stderr, "  (401: unknown device or wrong token)\n");
        } else if (status == 403) {
            fprintf(stderr, "  (403: device disabled)\n");
        }
        exit(1);
    }

    memcpy(key_guid, key, strlen(key));
    memcpy(key_guid + strlen(key), guid, sizeof guid);
    sha1((const uint8_t *)key_guid, strlen(key_guid), digest);
    base64(digest, sizeof digest, accept);

    for (line = eol + 2; *line != '\0'; line = eol + 2) {
        char *colon, *value;
        size_t vlen;
        eol = strstr(line, "\r\n");   /* the head ends with CRLF CRLF */
        *eol = '\0';
        colon = strchr(line, ':');
        if (colon == NULL) {
            continue;
        }
        *colon = '\0';
        value = colon + 1;
        while (*value == ' ' || *value == '\t') {
            value++;
        }
        vlen = strlen(value);
        while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t')) {
            vlen--;
        }
        if (strcasecmp(line, "Upgrade") == 0) {
            upgrade_ok = header_has_token(value, vlen, "websocket");
        } else if (strcasecmp(line, "Connection") == 0) {
            connection_ok = header_has_token(value, vlen, "upgrade");
        } else if (strcasecmp(line, "Sec-WebSocket-Accept") == 0) {
            accept_ok = vlen == strlen(accept) && memcmp(value, accept, vlen) == 0;
        }
    }
    if (!upgrade_ok || !connection_ok || !accept_ok) {
        die("bad upgrade response (Upgrade %s, Connection %s, Sec-WebSocket-Accept %s)",
            upgrade_ok ? "ok" : "bad", connection_ok ? "ok" : "bad", accept_ok ? "ok" : "bad");
    }
}

/* A complete message from the hub (text or binary), or a control frame. */
typedef struct {
    int opcode;
    const uint8_t *data;
    size_t len;
} ws_message;

/* Looks at the next frame in g_rx. *consumed = 0: more bytes are needed.
 * Otherwise the frame is *consumed bytes long, and the caller drops them after
 * using the message; the return value is 1 if that frame completed a message
 * (or is a control frame) in *m, 0 if it was a fragment now stored in g_msg.
 * Protocol errors close the connection. */
static int ws_next(ws_message *m, size_t *consumed)
{
    size_t h = 2;
    uint64_t len;
    int fin, opcode;
    const uint8_t *payload;

    *consumed = 0;
    if (g_rx_len < 2) {
        return 0;
    }
    fin = (g_rx[0] & 0x80) != 0;
    opcode = g_rx[0] & 0x0f;
    if ((g_rx[0] & 0x70) != 0 || (g_rx[1] & 0x80) != 0) {
        ws_send_close(1002);
        die("protocol error: reserved bits set, or a masked frame from the server");
    }
    len = g_rx[1] & 0x7f;
    if (len == 126) {
        if (g_rx_len < 4) {
            return 0;
        }
        len = ((uint64_t)g_rx[2] << 8) | g_rx[3];
        h = 4;
    } else if (len == 127) {
        unsigned i;
        if (g_rx_len < 10) {
            return 0;
        }
        len = 0;
        for (i = 0; i < 8; i++) {
            len = (len << 8) | g_rx[2 + i];
        }
        h = 10;
    }
    if (len > MSG_CAP) {
        ws_send_close(1009);
        die("a message from the hub is larger than %d bytes", MSG_CAP);
    }
    if (g_rx_len < h + len) {
        return 0;
    }
    payload = g_rx + h;
    *consumed = h + (size_t)len;

    if (opcode >= OP_CLOSE) {
        if (opcode > OP_PONG || !fin || len > 125) {
            ws_send_close(1002);
            die("protocol error: bad control frame");
        }
        m->opcode = opcode;
        m->data = payload;
        m->len = (size_t)len;
        return 1;
    }
    if (opcode != OP_CONT && opcode != OP_TEXT && opcode != OP_BINARY) {
        ws_send_close(1002);
        die("protocol error: unknown opcode %d", opcode);
    }
    if (opcode == OP_CONT) {
        if (g_msg_opcode < 0) {
            ws_send_close(1002);
            die("protocol error: continuation without a start");
        }
        if (len > MSG_CAP - g_msg_len) {
            ws_send_close(1009);
            die("a fragmented message from the hub is larger than %d bytes", MSG_CAP);
        }
        memcpy(g_msg + g_msg_len, payload, (size_t)len);
        g_msg_len += (size_t)len;
        if (!fin) {
            return 0;
        }
        m->opcode = g_msg_opcode;
        m->data = g_msg;
        m->len = g_msg_len;
        g_msg_opcode = -1;
        return 1;
    }
    if (g_msg_opcode >= 0) {
        ws_send_close(1002);
        die("protocol error: new message inside a fragmented one");
    }
    if (!fin) {
        memcpy(g_msg, payload, (size_t)len);
        g_msg_len = (size_t)len;
        g_msg_opcode = opcode;
        return 0;
    }
    m->opcode = opcode;
    m->data = payload;      /* no copy for the usual unfragmented message */
    m->len = (size_t)len;
    return 1;
}

/* ---- the sensor ------------------------------------------------------- */

typedef struct {
    int welcomed;
    uint64_t next_seq;      /* seq of the next frame to send */
    uint64_t last_sent;     /* 0 before the first frame */
    uint64_t last_acked;
    unsigned long frames_sent;
    unsigned long frames_wanted;    /* 0 = until interrupted */
    int64_t interval_ms;
    int64_t next_send_ms;
    int64_t started_ms;
    int closing;            /* we sent a close frame */
    int64_t close_deadline_ms;
} sensor;

static void start_closing(sensor *s, unsigned code)
{
    if (!s->closing) {
        ws_send_close(code);
        s->closing = 1;
        s->close_deadline_ms = monotonic_ms() + TIMEOUT_MS;
    }
}

static void send_telemetry(sensor *s)
{
    hub_builder b;
    size_t len = 0;
    hub_err err;
    unsigned long n = s->frames_sent;
    int64_t uptime_s = (monotonic_ms() - s->started_ms) / 1000;

    err = hub_frame_begin(&b, g_frame, sizeof g_frame, s->next_seq, realtime_us());
    if (err == HUB_OK) {
        err = hub_frame_add_f64(&b, "temp", 0, 20.0 + (double)(n % 50) / 10.0);
    }
    if (err == HUB_OK) {
        err = hub_frame_add_i64(&b, "uptime_s", 0, uptime_s);
    }
    if (err == HUB_OK) {
        err = hub_frame_add_bool(&b, "door.open", 0, n % 7 == 0);
    }
    if (err == HUB_OK && n % 10 == 0) {
        err = hub_frame_add_string(&b, "fw", 0, "host_sensor/1.0");
    }
    if (err == HUB_OK) {
        err = hub_frame_finish(&b, &len);
    }
    if (err != HUB_OK) {
        die("cannot build frame %llu: %s", (unsigned long long)s->next_seq, hub_strerror(err));
    }
    ws_send(OP_BINARY, g_frame, len);
    printf("sent  seq=%llu (%u bytes)\n", (unsigned long long)s->next_seq, (unsigned)len);
    s->last_sent = s->next_seq++;
    s->frames_sent++;
}

/* Raw JSON string contents are safe to echo inside quotes if they hold no
 * control characters (the scanner already stopped at the closing quote). */
static int echoable(const hub_json_value *v, size_t max)
{
    size_t i;
    if (v->kind != HUB_JSON_STRING || v->len == 0 || v->len > max) {
        return 0;
    }
    for (i = 0; i < v->len; i++) {
        if ((unsigned char)v->ptr[i] < 0x20) {
            return 0;
        }
    }
    return 1;
}

/* Delivery is at least once: a repeated id is the same command. The only
 * command here, set_interval, is idempotent, so running it again is fine. */
static void handle_command(sensor *s, const char *msg, size_t len)
{
    hub_json_value id, name, params, seconds;
    uint64_t secs = 0;

    if (!hub_json_find(msg, len, "id", &id) || !echoable(&id, 128)) {
        printf("command without a usable id, ignored\n");
        return;
    }
    if (!hub_json_find(msg, len, "name", &name)) {
        name.ptr = "";
    }
    printf("command id=%.*s name=%.*s\n", (int)id.len, id.ptr, (int)name.len, name.ptr);
    snprintf(g_text, sizeof g_text, "{\"type\":\"command_ack\",\"id\":\"%.*s\"}", (int)id.len, id.ptr);
    ws_send_text(g_text);

    if (hub_json_string_is(&name, "set_interval") && hub_json_find(msg, len, "params", &params) &&
        hub_json_find(params.ptr, params.len, "seconds", &seconds) && hub_json_u64(&seconds, &secs) &&
        secs >= 1 && secs <= 3600) {
        s->interval_ms = (int64_t)secs * 1000;
        s->next_send_ms = monotonic_ms() + s->interval_ms;
        snprintf(g_text, sizeof g_text,
                 "{\"type\":\"command_result\",\"id\":\"%.*s\",\"ok\":true,\"result\":{\"seconds\":%u}}",
                 (int)id.len, id.ptr, (unsigned)secs);
    } else {
        snprintf(g_text, sizeof g_text,
                 "{\"type\":\"command_result\",\"id\":\"%.*s\",\"ok\":false,\"error\":\"unsupported\"}",
                 (int)id.len, id.ptr);
    }
    ws_send_text(g_text);
}

static void handle_text(sensor *s, const char *msg, size_t len)
{
    hub_json_value type;
    if (!s->welcomed) {
        uint64_t last_seq = 0;
        if (!hub_text_welcome_last_seq(msg, len, &last_seq)) {
            die("expected the welcome, got: %.*s", (int)len, msg);
        }
        if (last_seq >= HUB_SEQ_MAX) {
            die("last_seq %llu leaves no sequence numbers", (unsigned long long)last_seq);
        }
        s->welcomed = 1;
        s->next_seq = last_seq + 1;
        s->last_acked = last_seq;
        s->next_send_ms = monotonic_ms();
        printf("welcome: last_seq=%llu, sending from seq %llu\n", (unsigned long long)last_seq,
               (unsigned long long)s->next_seq);
        return;
    }
    if (hub_text_is_command(msg, len)) {
        handle_command(s, msg, len);
    } else if (hub_text_type_is(msg, len, "rejected")) {
        printf("rejected: %.*s\n", (int)len, msg);
    } else {
        if (!hub_json_find(msg, len, "type", &type)) {
            type.ptr = "";
        }
        printf("message of type %.*s ignored\n", (int)type.len, type.ptr);
    }
}

static void handle_binary(sensor *s, const uint8_t *data, size_t len)
{
    uint64_t seq = 0;
    hub_err err = hub_ack_decode(data, len, &seq);
    if (err != HUB_OK) {
        printf("binary message that is not an ack (%s), ignored\n", hub_strerror(err));
        return;
    }
    if (seq > s->last_acked) {
        s->last_acked = seq;
    }
    printf("ack   seq=%llu%s\n", (unsigned long long)seq,
           s->welcomed && seq > s->last_sent && s->last_sent != 0 ? " (beyond what was sent!)" : "");
}

/* The hub closed the connection: answer, and say why. Returns the exit code. */
static int handle_close(sensor *s, const uint8_t *data, size_t len)
{
    unsigned code = len >= 2 ? ((unsigned)data[0] << 8) | data[1] : 1005;
    const char *why = "";
    switch (code) {
    case 1008: why = " (policy: too many bad frames)"; break;
    case 1009: why = " (a frame was too large)"; break;
    case 4001: why = " (replaced by a newer connection of this device)"; break;
    case 4003: why = " (device disabled, deleted, or its token changed)"; break;
    default: break;
    }
    printf("close: %u%s %.*s\n", code, why, len > 2 ? (int)(len - 2) : 0,
           len > 2 ? (const char *)data + 2 : "");
    if (s->closing) {
        return 0;               /* the answer to our own close */
    }
    /* Echo the code (RFC 6455 section 5.5.1); 1005 is never sent on the wire. */
    ws_send(OP_CLOSE, data, len >= 2 ? 2 : 0);
    return 1;
}

/* Handles one message; returns -1 to go on, or the exit code. */
static int dispatch(sensor *s, const ws_message *m)
{
    switch (m->opcode) {
    case OP_TEXT:
        handle_text(s, (const char *)m->data, m->len);
        break;
    case OP_BINARY:
        handle_binary(s, m->data, m->len);
        break;
    case OP_PING:
        ws_send(OP_PONG, m->data, m->len);
        break;
    case OP_CLOSE:
        return handle_close(s, m->data, m->len);
    default:
        break;                  /* pong */
    }
    return -1;
}

int main(int argc, char **argv)
{
    sensor s;
    struct sigaction sa;
    const char *host, *port, *device, *token;
    int exit_code = -1;
    char *end;
    long port_no;
    size_t i;

    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: host_sensor HOST PORT DEVICE_ID TOKEN [FRAMES]\n");
        return 2;
    }
    host = argv[1];
    port = argv[2];
    device = argv[3];
    token = argv[4];
    port_no = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || port_no < 1 || port_no > 65535) {
        die("bad port %s", port);
    }
    if (!valid_device_id(device)) {
        die("bad device id (1..64 of [A-Za-z0-9._-], not only dots)");
    }
    for (i = 0; token[i] != '\0'; i++) {
        if ((unsigned char)token[i] <= 0x20 || (unsigned char)token[i] >= 0x7f) {
            die("bad token");
        }
    }
    if (strlen(host) > 255 || strpbrk(host, " \r\n/") != NULL) {
        die("bad host");
    }
    memset(&s, 0, sizeof s);
    if (argc == 6) {
        s.frames_wanted = strtoul(argv[5], &end, 10);
        if (*argv[5] == '\0' || *end != '\0' || s.frames_wanted == 0) {
            die("bad FRAMES %s", argv[5]);
        }
    }
    s.interval_ms = 1000;
    setvbuf(stdout, NULL, _IOLBF, 0);
    s.started_ms = monotonic_ms();

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    g_urandom = open("/dev/urandom", O_RDONLY);
    if (g_urandom < 0) {
        die("cannot open /dev/urandom");
    }
    connect_tcp(host, port);
    ws_handshake(host, port, device, token);
    printf("connected to ws://%s:%s/devices/%s\n", host, port, device);

    while (exit_code < 0) {
        int64_t now, wait;
        ws_message m;
        size_t used;

        /* Handle every complete frame already buffered. */
        for (;;) {
            int got = ws_next(&m, &used);
            if (used == 0) {
                break;
            }
            if (got) {
                exit_code = dispatch(&s, &m);  /* m points into g_rx: use it first */
            }
            memmove(g_rx, g_rx + used, g_rx_len - used);
            g_rx_len -= used;
            if (exit_code >= 0) {
                break;
            }
        }
        if (exit_code >= 0) {
            break;
        }

        now = monotonic_ms();
        if (g_interrupted) {
            start_closing(&s, 1000);
        }
        if (s.closing && now > s.close_deadline_ms) {
            fprintf(stderr, "host_sensor: no answer to our close\n");
            exit_code = 1;
            break;
        }
        if (!s.welcomed && now - s.started_ms > TIMEOUT_MS) {
            die("no welcome within %d ms", TIMEOUT_MS);
        }
        wait = 100;
        if (s.welcomed && !s.closing) {
            int want_more = s.frames_wanted == 0 || s.frames_sent < s.frames_wanted;
            if (want_more && now >= s.next_send_ms) {
                send_telemetry(&s);
                s.next_send_ms += s.interval_ms;
                if (s.next_send_ms < now) {
                    s.next_send_ms = now + s.interval_ms;   /* fell behind: do not burst */
                }
            }
            if (!want_more && s.last_acked >= s.last_sent) {
                printf("all %lu frames acked\n", s.frames_sent);
                start_closing(&s, 1000);
            }
            if (want_more) {
                wait = s.next_send_ms - now;
            }
        }
        receive_some(wait > 1000 ? 1000 : (int)wait);
    }
    close(g_fd);
    return exit_code;
}
