/*
 * esp32_sensor.ino - an ESP32 sensor for the hub, as documentation.
 * Not built by the Makefile; shown for the pattern, not tested on hardware here.
 *
 * Setup: install the "WebSockets" library by Markus Sattler (arduinoWebSockets),
 * and copy hub_frame.h, hub_frame.c, hub_text.h and hub_text.c from devices/c
 * into this sketch folder (the Arduino IDE compiles the .c files as C).
 *
 * What it shows:
 *   - resume: frames are numbered from the welcome's last_seq; after a
 *     reconnect, everything the hub already has (seq <= last_seq) is dropped
 *     and the rest is resent, oldest first;
 *   - unacked frames kept, as encoded bytes, in a small static ring buffer;
 *     an ack for seq N frees every held frame with seq <= N;
 *   - time: base_time from the welcome's server_time_us plus the local
 *     microsecond timer, so a resent frame keeps its original timestamps.
 *
 * Order matters: the hub treats any seq at or below its mark as a duplicate,
 * so frame N+1 must never reach it before frame N. If a send fails, this
 * sketch drops the connection and resends everything, in order, after the
 * next welcome.
 *
 * Memory: the ring is RING_SLOTS * sizeof(held_frame) = 16 * 144 bytes, about
 * 2.3 KB, static. Building a frame uses a 32-byte hub_builder on the stack.
 * Nothing is allocated per frame.
 */
#include <Arduino.h>
#include <WiFi.h>
#include <WebSocketsClient.h>
#include <esp_timer.h>

#include "hub_frame.h"
#include "hub_text.h"

/* ---- configuration ---------------------------------------------------- */

static const char WIFI_SSID[] = "my-wifi";
static const char WIFI_PASSWORD[] = "secret";
static const char HUB_HOST[] = "hub.example.com";
static const uint16_t HUB_PORT = 443;
#define HUB_USE_TLS 1
static const char DEVICE_ID[] = "sensor-1";
static const char DEVICE_TOKEN[] = "token-from-POST-/api/v1/devices";
/* The root certificate of the hub's TLS certificate (PEM). */
static const char HUB_ROOT_CA[] = "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n";

static const uint32_t SAMPLE_PERIOD_MS = 10000;

/* ---- unacked frames ------------------------------------------------------ */

#define RING_SLOTS 16
#define FRAME_CAP 128           /* enough for the readings below: 20 + 3 small readings */

struct held_frame {
    uint64_t seq;
    uint16_t len;
    uint8_t bytes[FRAME_CAP];
};

static held_frame ring[RING_SLOTS];
static unsigned ring_first = 0;         /* index of the oldest held frame */
static unsigned ring_count = 0;
static uint32_t frames_dropped = 0;     /* oldest frames dropped because the ring was full */

static held_frame *ring_at(unsigned i)
{
    return &ring[(ring_first + i) % RING_SLOTS];
}

/* Frees every held frame with seq <= acked (an ack covers all of them). */
static void ring_release(uint64_t acked)
{
    while (ring_count > 0 && ring_at(0)->seq <= acked) {
        ring_first = (ring_first + 1) % RING_SLOTS;
        ring_count--;
    }
}

/* A free slot for a new frame. When the ring is full the oldest frame is
 * dropped: the hub sees a gap in seq, which it allows and counts. */
static held_frame *ring_reserve(void)
{
    if (ring_count == RING_SLOTS) {
        ring_first = (ring_first + 1) % RING_SLOTS;
        ring_count--;
        frames_dropped++;
    }
    return ring_at(ring_count);
}

/* ---- connection state ---------------------------------------------------- */

static WebSocketsClient webSocket;
static char path[16 + sizeof DEVICE_ID];
static char auth_header[32 + sizeof DEVICE_TOKEN];
static char reply[256];

static bool welcomed = false;           /* true between the welcome and a disconnect */
static uint64_t next_seq = 0;           /* 0 until the first welcome after boot */
static int64_t clock_offset_us = 0;     /* epoch time = esp_timer_get_time() + offset */
static uint32_t last_sample_ms = 0;

static int64_t epoch_now_us(void)
{
    return esp_timer_get_time() + clock_offset_us;
}

/* Sends one held frame; on failure drops the connection so that nothing
 * later can overtake it. Returns false then. */
static bool send_held(const held_frame *f)
{
    if (webSocket.sendBIN(f->bytes, f->len)) {
        return true;
    }
    Serial.println("send failed: reconnecting, will resend in order");
    welcomed = false;
    webSocket.disconnect();
    return false;
}

static void on_welcome(const char *msg, size_t len)
{
    uint64_t last_seq = 0, server_time_us = 0;
    hub_json_value v;

    if (!hub_text_welcome_last_seq(msg, len, &last_seq)) {
        Serial.println("expected the welcome");
        webSocket.disconnect();
        return;
    }
    if (hub_json_find(msg, len, "server_time_us", &v) && hub_json_u64(&v, &server_time_us)) {
        clock_offset_us = (int64_t)server_time_us - esp_timer_get_time();
    }
    /* Everything up to last_seq is stored or rejected: never send it again. */
    ring_release(last_seq);
    if (next_seq <= last_seq) {
        next_seq = last_seq + 1;        /* first connect after boot, or the hub is ahead */
    }
    welcomed = true;
    Serial.printf("welcome: last_seq=%llu, resending %u held frame(s), next seq %llu\n",
                  (unsigned long long)last_seq, ring_count, (unsigned long long)next_seq);
    for (unsigned i = 0; i < ring_count; i++) {
        if (!send_held(ring_at(i))) {
            return;
        }
    }
}

/* Commands are delivered at least once: a repeated id is the same command,
 * so handlers must be idempotent (or remember recent ids). */
static void on_command(const char *msg, size_t len)
{
    hub_json_value id;
    if (!hub_json_find(msg, len, "id", &id) || id.kind != HUB_JSON_STRING || id.len > 64) {
        return;
    }
    snprintf(reply, sizeof reply, "{\"type\":\"command_ack\",\"id\":\"%.*s\"}", (int)id.len, id.ptr);
    webSocket.sendTXT(reply);
    /* This sketch knows no commands. */
    snprintf(reply, sizeof reply,
             "{\"type\":\"command_result\",\"id\":\"%.*s\",\"ok\":false,\"error\":\"unsupported\"}",
             (int)id.len, id.ptr);
    webSocket.sendTXT(reply);
}

static void on_event(WStype_t type, uint8_t *payload, size_t length)
{
    switch (type) {
    case WStype_CONNECTED:
        Serial.println("connected, waiting for the welcome");
        welcomed = false;               /* send nothing before we know last_seq */
        break;
    case WStype_DISCONNECTED:
        Serial.println("disconnected");
        welcomed = false;
        break;
    case WStype_TEXT: {
        const char *msg = (const char *)payload;
        if (!welcomed) {
            on_welcome(msg, length);
        } else if (hub_text_is_command(msg, length)) {
            on_command(msg, length);
        } else if (hub_text_type_is(msg, length, "rejected")) {
            Serial.printf("rejected: %.*s\n", (int)length, msg);   /* counts as stored: not resent */
        }
        break;
    }
    case WStype_BIN: {
        uint64_t acked = 0;
        if (hub_ack_decode(payload, length, &acked) == HUB_OK) {
            ring_release(acked);
        }
        break;
    }
    default:
        break;                          /* the library answers pings itself */
    }
}

/* Builds one frame straight into the ring and sends it if we can. */
static void sample_and_send(void)
{
    if (next_seq == 0) {
        return;                         /* no welcome since boot: seq and clock unknown */
    }
    held_frame *f = ring_reserve();
    hub_builder b;
    size_t len = 0;
    hub_err err = hub_frame_begin(&b, f->bytes, sizeof f->bytes, next_seq, epoch_now_us());
    if (err == HUB_OK) {
        err = hub_frame_add_f64(&b, "temp", 0, temperatureRead());
    }
    if (err == HUB_OK) {
        err = hub_frame_add_i64(&b, "heap_free", 0, (int64_t)ESP.getFreeHeap());
    }
    if (err == HUB_OK) {
        err = hub_frame_add_i64(&b, "wifi.rssi", 0, WiFi.RSSI());
    }
    if (err == HUB_OK) {
        err = hub_frame_finish(&b, &len);
    }
    if (err != HUB_OK) {
        Serial.printf("frame not built: %s\n", hub_strerror(err));
        return;                         /* the reserved slot stays free */
    }
    f->seq = next_seq++;
    f->len = (uint16_t)len;
    ring_count++;
    if (welcomed) {
        send_held(f);                   /* otherwise it goes out after the next welcome */
    }
}

void setup()
{
    Serial.begin(115200);
    WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
    while (WiFi.status() != WL_CONNECTED) {
        delay(250);
    }

    snprintf(path, sizeof path, "/devices/%s", DEVICE_ID);
    snprintf(auth_header, sizeof auth_header, "Authorization: Bearer %s", DEVICE_TOKEN);
    webSocket.setExtraHeaders(auth_header);
    /* An empty protocol argument: no Sec-WebSocket-Protocol header. */
#if HUB_USE_TLS
    /* beginSSL(host, port, path) also works, but does not check the hub's certificate. */
    webSocket.beginSslWithCA(HUB_HOST, HUB_PORT, path, HUB_ROOT_CA, "");
#else
    webSocket.begin(HUB_HOST, HUB_PORT, path, "");
#endif
    webSocket.onEvent(on_event);
    webSocket.setReconnectInterval(5000);
    webSocket.enableHeartbeat(15000, 5000, 2);   /* notice a dead link sooner than TCP does */
}

void loop()
{
    webSocket.loop();
    if (millis() - last_sample_ms >= SAMPLE_PERIOD_MS) {
        last_sample_ms = millis();
        sample_and_send();
    }
}
