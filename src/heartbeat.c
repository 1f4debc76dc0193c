/* Heartbeats: one unidirectional stream per tick carrying 0x01, a u32 length and a JSON object. */
#include "tunnel_int.h"

#include "tls.h"
#include "vitals.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct synesis_vitals {
    cJSON *obj;
};

static int vitals_set(synesis_vitals *v, const char *key, cJSON *item) {
    if (!v || !key || !item) {
        cJSON_Delete(item);
        return item ? SYNESIS_ERR_INVALID_ARGUMENT : SYNESIS_ERR_NOMEM;
    }
    if (cJSON_GetObjectItemCaseSensitive(v->obj, key))
        return cJSON_ReplaceItemInObjectCaseSensitive(v->obj, key, item) ? 0 : SYNESIS_ERR_NOMEM;
    return cJSON_AddItemToObject(v->obj, key, item) ? 0 : (cJSON_Delete(item), SYNESIS_ERR_NOMEM);
}

SYNESIS_API int synesis_vitals_add_number(synesis_vitals *v, const char *key, double value) {
    return vitals_set(v, key, cJSON_CreateNumber(value));
}

SYNESIS_API int synesis_vitals_add_string(synesis_vitals *v, const char *key, const char *value) {
    if (!value)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    return vitals_set(v, key, cJSON_CreateString(value));
}

SYNESIS_API int synesis_vitals_add_bool(synesis_vitals *v, const char *key, int value) {
    return vitals_set(v, key, cJSON_CreateBool(value));
}

int syn_heartbeat_init(synesis_tunnel *t, char *detail) {
    t->vitals_sampler = calloc(1, sizeof(syn_vitals_sampler));
    if (!t->vitals_sampler)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    if (t->cfg.device_id) {
        syn_copy_str(t->device_id, sizeof(t->device_id), t->cfg.device_id);
        return 0;
    }
    /* The device id is the certificate's CN without its "device-" prefix. */
    SSL *ssl = SSL_new(t->ssl_ctx);
    X509 *leaf = ssl ? SSL_get_certificate(ssl) : NULL;
    char cn[128] = "";
    int rv = leaf ? syn_cert_common_name(leaf, cn, sizeof(cn)) : SYNESIS_ERR_NO_CERTIFICATE;
    SSL_free(ssl);
    if (rv != 0)
        return syn_fail(detail, rv,
                        "cannot derive the device id from the certificate's CN; set "
                        "config.device_id");
    snprintf(t->device_id, sizeof(t->device_id), "%s",
             strncmp(cn, "device-", 7) == 0 && cn[7] ? cn + 7 : cn);
    return 0;
}

/* Builds one frame: 0x01, u32 big-endian length, JSON. */
static uint8_t *build_frame(synesis_tunnel *t, uint64_t seq, int64_t ts, size_t *len) {
    cJSON *o = cJSON_CreateObject();
    cJSON *vit = syn_vitals_sample(t->vitals_sampler, t->cfg.vitals_disk_path);
    if (!o || !vit) {
        cJSON_Delete(o);
        cJSON_Delete(vit);
        return NULL;
    }
    if (t->cb.on_vitals && !t->free_pending) {
        synesis_vitals v = {vit};
        t->cb.on_vitals(t, &v, t->user_data);
    }
    cJSON_AddStringToObject(o, "device_id", t->device_id);
    cJSON_AddNumberToObject(o, "timestamp", (double)ts);
    cJSON_AddNumberToObject(o, "sequence", (double)seq);
    cJSON_AddItemToObject(o, "vitals", vit);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json)
        return NULL;
    size_t n = strlen(json);
    if (n > t->cfg.max_heartbeat_size) {
        cJSON_free(json);
        *len = n;
        return NULL;
    }
    uint8_t *frame = malloc(5 + n);
    if (frame) {
        frame[0] = 0x01;
        frame[1] = (uint8_t)(n >> 24);
        frame[2] = (uint8_t)(n >> 16);
        frame[3] = (uint8_t)(n >> 8);
        frame[4] = (uint8_t)n;
        memcpy(frame + 5, json, n);
        *len = 5 + n;
    }
    cJSON_free(json);
    return frame;
}

static void free_frame(void *ud, const void *data, size_t len) {
    (void)ud;
    (void)len;
    free((void *)data);
}

static void send_heartbeat(synesis_tunnel *t) {
    synesis_heartbeat_info info = {
        .sequence = t->hb_sequence++,
        .timestamp_ms = (int64_t)syn_wall_ms(),
    };
    if (t->qc)
        info.rtt_ms = t->state.latency_ms = syn_qconn_srtt_ms(t->qc);
    uint8_t *frame = NULL;
    size_t len = 0;
    syn_qstream *qs = NULL;
    if (!syn_tunnel_ready(t)) {
        info.status = SYNESIS_ERR_NOT_CONNECTED;
    } else if (!(frame = build_frame(t, info.sequence, info.timestamp_ms, &len))) {
        info.status = len ? SYNESIS_ERR_INVALID_ARGUMENT : SYNESIS_ERR_NOMEM;
        if (len)
            syn_tunnel_log(t, SYNESIS_LOG_WARN,
                           "heartbeat %llu: %zu bytes of JSON exceed the "
                           "maximum of %zu",
                           (unsigned long long)info.sequence, len, t->cfg.max_heartbeat_size);
    } else if (!syn_tunnel_ready(t)) {
        /* on_vitals may have disconnected or freed the tunnel. */
        free(frame);
        info.status = SYNESIS_ERR_NOT_CONNECTED;
    } else if ((info.status = syn_qconn_open_stream(t->qc, 0, NULL, &qs)) != 0) {
        free(frame);
    } else if ((info.status = syn_qstream_write_nocopy(qs, frame, len, free_frame, NULL, 1)) == 0) {
        info.size = len;
    }
    if (info.status == 0) {
        t->stats.heartbeats_sent++;
        t->stats.bytes_sent += len;
        t->stats.last_heartbeat_sequence = info.sequence;
        t->stats.last_heartbeat_rtt_ms = info.rtt_ms;
        syn_qconn_schedule(t->qc);
    } else {
        t->stats.heartbeats_failed++;
        syn_tunnel_log(t, SYNESIS_LOG_WARN, "heartbeat %llu not sent: %s",
                       (unsigned long long)info.sequence, synesis_strerror(info.status));
    }
    if (t->cb.on_heartbeat && !t->free_pending)
        t->cb.on_heartbeat(t, &info, t->user_data);
}

static void hb_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    syn_tunnel_enter(t);
    send_heartbeat(t);
    syn_tunnel_leave(t);
}

void syn_heartbeat_start(synesis_tunnel *t) {
    if (t->cfg.heartbeat_interval <= 0)
        return;
    ev_timer_stop(t->loop, &t->hb_timer);
    ev_timer_init(&t->hb_timer, hb_timer_cb, 0., t->cfg.heartbeat_interval);
    t->hb_timer.data = t;
    /* The first one goes right after Connected, from the loop rather than from inside the state
     * change. */
    ev_timer_start(t->loop, &t->hb_timer);
}

void syn_heartbeat_stop(synesis_tunnel *t) { ev_timer_stop(t->loop, &t->hb_timer); }

void syn_heartbeat_free(synesis_tunnel *t) {
    ev_timer_stop(t->loop, &t->hb_timer);
    free(t->vitals_sampler);
    t->vitals_sampler = NULL;
}
