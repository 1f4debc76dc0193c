/* Heartbeats: one unidirectional stream per tick carrying 0x01, a u32 length and a JSON object;
 * their outcomes (delivered, lost, refused); and the edge's reports about them. */
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
    /* Replacing: the old one goes first, so a failure (copying the key) leaves item with us
     * whatever the cJSON version does with a replacement it could not name. */
    cJSON_DeleteItemFromObjectCaseSensitive(v->obj, key);
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
    ev_timer_init(&t->hb.timer, NULL, 0., 0.);
    t->hb.vitals_sampler = calloc(1, sizeof(syn_vitals_sampler));
    if (!t->hb.vitals_sampler)
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    if (t->cfg.device_id) {
        syn_copy_str(t->hb.device_id, sizeof(t->hb.device_id), t->cfg.device_id);
        return 0;
    }
    /* The device id is the certificate's CN without its "device-" prefix. (From the context
     * itself: an SSL made only to reach the certificate could fail to allocate.) */
    X509 *leaf = SSL_CTX_get0_certificate(t->ssl_ctx);
    char cn[128] = "";
    int rv = leaf ? syn_cert_common_name(leaf, cn, sizeof(cn)) : SYNESIS_ERR_NO_CERTIFICATE;
    if (rv != 0)
        return syn_fail(detail, rv,
                        "cannot derive the device id from the certificate's CN; set "
                        "config.device_id");
    snprintf(t->hb.device_id, sizeof(t->hb.device_id), "%s",
             strncmp(cn, "device-", 7) == 0 && cn[7] ? cn + 7 : cn);
    return 0;
}

/* config.heartbeat_changed_vitals: the vitals of vit that differ from those of the newest
 * heartbeat acknowledged on connection conn (all of them when there is none). */
static cJSON *changed_vitals(const synesis_tunnel *t, const cJSON *vit, uint64_t conn) {
    const cJSON *base = t->hb.acked_vitals;
    if (!base || t->hb.acked_conn != conn)
        return cJSON_Duplicate(vit, 1);
    cJSON *o = cJSON_CreateObject();
    const cJSON *it;
    cJSON_ArrayForEach(it, vit) {
        const cJSON *was = cJSON_GetObjectItemCaseSensitive(base, it->string);
        if (was && cJSON_Compare(it, was, 1))
            continue;
        cJSON *c = cJSON_Duplicate(it, 1);
        if (!o || !c || !cJSON_AddItemToObject(o, it->string, c)) {
            cJSON_Delete(c);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

/* Builds one frame: 0x01, u32 big-endian length, JSON. With config.heartbeat_changed_vitals,
 * *all gets every vital of the sample (the next heartbeats' base once this one is acknowledged)
 * and the frame only those that changed. */
static uint8_t *build_frame(synesis_tunnel *t, uint64_t seq, int64_t ts, uint64_t conn,
                            const uint64_t *ka_ms, cJSON **all, size_t *len) {
    cJSON *o = cJSON_CreateObject();
    cJSON *vit = syn_vitals_sample(t->hb.vitals_sampler, t->cfg.vitals_disk_path);
    if (!o || !vit) {
        cJSON_Delete(o);
        cJSON_Delete(vit);
        return NULL;
    }
    if (t->cb.on_vitals && !syn_hold_dying(&t->hold)) {
        synesis_vitals v = {vit};
        t->cb.on_vitals(t, &v, t->user_data);
    }
    if (t->cfg.heartbeat_changed_vitals) {
        cJSON *changed = changed_vitals(t, vit, conn);
        if (!changed) {
            cJSON_Delete(o);
            cJSON_Delete(vit);
            return NULL;
        }
        *all = vit;
        vit = changed;
    }
    /* Every member or no heartbeat: one without its id, sequence or vitals would be refused. The
     * edge may send its keep-alive PINGs just before ours would go (docs/protocol.md): the ACK we
     * answer with refreshes the NAT binding in one wake-up instead of our PING's two. It keeps
     * keep_alive_ms for the connection: sent until a heartbeat that carries it is acknowledged,
     * and again when it changes. */
    if (!cJSON_AddStringToObject(o, "device_id", t->hb.device_id) ||
        !cJSON_AddNumberToObject(o, "timestamp", (double)ts) ||
        !cJSON_AddNumberToObject(o, "sequence", (double)seq) ||
        (ka_ms && !cJSON_AddNumberToObject(o, "keep_alive_ms", (double)*ka_ms)) ||
        !cJSON_AddItemToObject(o, "vitals", vit)) {
        cJSON_Delete(o);
        cJSON_Delete(vit); /* not attached */
        cJSON_Delete(*all);
        *all = NULL;
        return NULL;
    }
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t n = json ? strlen(json) : 0;
    uint8_t *frame = json && n <= t->cfg.max_heartbeat_size ? malloc(SYN_FRAME_HEADER + n) : NULL;
    if (frame) {
        syn_frame_header(frame, SYN_MSG_HEARTBEAT, n);
        memcpy(frame + SYN_FRAME_HEADER, json, n);
        *len = SYN_FRAME_HEADER + n;
    } else {
        cJSON_Delete(*all);
        *all = NULL;
        if (n > t->cfg.max_heartbeat_size)
            *len = n;
    }
    cJSON_free(json);
    return frame;
}

static void free_frame(const void *data, size_t len, void *ud) {
    (void)ud;
    (void)len;
    free((void *)data);
}

/* ---- heartbeat outcomes ---- */

/* One heartbeat handed to QUIC, until its stream closes or the connection ends. */
typedef struct syn_hb {
    syn_tobj base;
    synesis_tunnel *t;
    syn_qstream *qs;
    syn_link link; /* on t->hb.live */
    synesis_heartbeat_info info;
    int64_t stream_id;
    uint64_t conn; /* stats.connections when sent: stream ids repeat across connections */
    int refused;   /* already counted refused (the outcome is known) */
    cJSON *vitals; /* config.heartbeat_changed_vitals: every vital of the sample it was made of */
    int has_ka;    /* it carries keep_alive_ms, of value ka_ms */
    uint64_t ka_ms;
} syn_hb;

static void hb_unlink(syn_hb *h) {
    synesis_tunnel *t = h->t;
    syn_list_remove(&t->hb.live, &h->link);
}

static void recent_add(synesis_tunnel *t, const syn_hb *h, int state) {
    struct syn_hb_recent *r = &t->hb.recent[t->hb.recent_next++ % SYN_HB_RECENT];
    r->sequence = h->info.sequence;
    r->conn = h->conn;
    r->stream_id = h->stream_id;
    r->timestamp_ms = h->info.timestamp_ms;
    r->rtt_ms = h->info.rtt_ms;
    r->size = h->info.size;
    r->state = state;
}

/* Calls on_heartbeat_result (not once free() has begun). */
static void hb_result(synesis_tunnel *t, synesis_heartbeat_info *info, int status,
                      const char *detail) {
    info->status = status;
    info->detail = detail ? detail : "";
    if (!t->cb.on_heartbeat_result || syn_hold_dying(&t->hold))
        return;
    syn_tunnel_enter(t);
    t->cb.on_heartbeat_result(t, info, t->user_data);
    syn_tunnel_leave(t);
}

static void hb_refused(synesis_tunnel *t, synesis_heartbeat_info *info, const char *reason) {
    t->stats.heartbeats_refused++;
    syn_tunnel_log(t, SYNESIS_LOG_WARN, "heartbeat %llu refused by the edge: %s",
                   (unsigned long long)info->sequence, reason);
    hb_result(t, info, SYNESIS_ERR_HEARTBEAT_REFUSED, reason);
}

static void hb_reset(void *obj, syn_qstream *s, uint64_t app_code, int stop) {
    (void)s;
    syn_hb *h = obj;
    if (app_code != SYN_APP_BAD_FRAME || h->refused)
        return; /* any other reset: the stream's close reports it lost */
    h->refused = 1;
    char d[96];
    snprintf(d, sizeof(d), "%s with BAD_FRAME (0x%x)", stop ? "STOP_SENDING" : "RESET_STREAM",
             SYN_APP_BAD_FRAME);
    synesis_heartbeat_info info = h->info;
    hb_refused(h->t, &info, d);
}

static void hb_close(void *obj, syn_qstream *s, uint64_t app_code, int reset) {
    (void)s;
    syn_hb *h = obj;
    synesis_tunnel *t = h->t;
    hb_unlink(h);
    syn_qstream_set_user(h->qs, NULL);
    synesis_heartbeat_info info = h->info;
    int refused = h->refused;
    if (refused || !reset)
        recent_add(t, h, refused ? 2 : 1);
    if (!refused && !reset && h->vitals &&
        (!t->hb.acked_vitals || t->hb.acked_conn != h->conn ||
         h->info.sequence > t->hb.acked_sequence)) {
        /* The newest acknowledged: the base of the next heartbeats' changed vitals. */
        cJSON_Delete(t->hb.acked_vitals);
        t->hb.acked_vitals = h->vitals;
        t->hb.acked_sequence = h->info.sequence;
        t->hb.acked_conn = h->conn;
        h->vitals = NULL;
    }
    if (!refused && !reset && h->has_ka) {
        t->hb.ka_acked = 1;
        t->hb.ka_conn = h->conn;
        t->hb.ka_ms = h->ka_ms;
    }
    cJSON_Delete(h->vitals);
    free(h);
    if (refused)
        return;
    if (!reset) {
        /* Every byte and the FIN acknowledged by the edge's QUIC stack. */
        t->stats.heartbeats_delivered++;
        hb_result(t, &info, 0, NULL);
        return;
    }
    t->stats.heartbeats_failed++;
    char d[96];
    snprintf(d, sizeof(d), "heartbeat stream reset (application error 0x%llx)",
             (unsigned long long)app_code);
    syn_tunnel_log(t, SYNESIS_LOG_WARN, "heartbeat %llu lost: %s",
                   (unsigned long long)info.sequence, d);
    hb_result(t, &info, SYNESIS_ERR_CONNECTION_LOST, d);
}

static const syn_stream_handler hb_handler = {
    .reset = hb_reset,
    .close = hb_close,
};

/* ---- edge reports (0x02, u32 length, JSON, FIN) on edge-initiated unidirectional streams ---- */

typedef struct syn_report {
    syn_tobj base;
    synesis_tunnel *t;
    syn_qstream *qs;
    syn_link link; /* on t->hb.reports */
    int bad;
    size_t len;
    uint8_t buf[SYN_FRAME_HEADER + SYN_REPORT_MAX];
} syn_report;

static void report_free(syn_report *r) {
    synesis_tunnel *t = r->t;
    syn_list_remove(&t->hb.reports, &r->link);
    if (r->qs)
        syn_qstream_set_user(r->qs, NULL);
    free(r);
}

/* A report we will not read: ask the edge to stop (BAD_FRAME) and ignore the rest. */
static void report_bad(syn_report *r, const char *why) {
    r->bad = 1;
    syn_tunnel_log(r->t, SYNESIS_LOG_WARN, "edge report on stream %lld ignored: %s",
                   (long long)syn_qstream_id(r->qs), why);
    syn_qstream_stop_reading(r->qs, SYN_APP_BAD_FRAME);
}

static int json_uint(const cJSON *n, uint64_t *out) {
    if (!cJSON_IsNumber(n) || !(n->valuedouble >= 0) || n->valuedouble > 9007199254740992.0 ||
        n->valuedouble != (double)(uint64_t)n->valuedouble)
        return 0;
    *out = (uint64_t)n->valuedouble;
    return 1;
}

/* The edge refused a heartbeat: find it (in flight or recently delivered) and report it. */
static void report_heartbeat_refused(synesis_tunnel *t, int has_sid, uint64_t sid, int has_seq,
                                     uint64_t seq, const char *reason) {
    uint64_t conn = t->stats.connections;
    syn_hb *h;
    SYN_LIST_FOREACH(h, &t->hb.live, syn_hb, link) {
        if ((has_seq && h->info.sequence == seq) ||
            (!has_seq && has_sid && h->conn == conn && (uint64_t)h->stream_id == sid)) {
            if (h->refused)
                return; /* already known */
            h->refused = 1;
            synesis_heartbeat_info info = h->info;
            hb_refused(t, &info, reason);
            return;
        }
    }
    for (size_t i = 0; i < SYN_HB_RECENT; i++) {
        struct syn_hb_recent *r = &t->hb.recent[i];
        if (!r->state ||
            !((has_seq && r->sequence == seq) ||
              (!has_seq && has_sid && r->conn == conn && (uint64_t)r->stream_id == sid)))
            continue;
        if (r->state == 2)
            return; /* already known */
        /* Judged after the edge had received (and acknowledged) all of it. */
        r->state = 2;
        if (t->stats.heartbeats_delivered)
            t->stats.heartbeats_delivered--;
        synesis_heartbeat_info info = {.struct_size = sizeof(info),
                                       .sequence = r->sequence,
                                       .timestamp_ms = r->timestamp_ms,
                                       .rtt_ms = r->rtt_ms,
                                       .size = r->size};
        hb_refused(t, &info, reason);
        return;
    }
    /* Not one we remember (too old, or an id we never used): still counted. */
    synesis_heartbeat_info info = {.struct_size = sizeof(info), .sequence = has_seq ? seq : 0};
    hb_refused(t, &info, reason);
}

static void report_complete(syn_report *r) {
    synesis_tunnel *t = r->t;
    if (r->len < SYN_FRAME_HEADER) {
        report_bad(r, "truncated header");
        return;
    }
    size_t need = syn_frame_length(r->buf);
    size_t got = r->len - SYN_FRAME_HEADER;
    if (got != need) {
        char d[96];
        snprintf(d, sizeof(d), "%s: %zu bytes of JSON for a length of %zu",
                 got < need ? "truncated" : "trailing bytes", got, need);
        report_bad(r, d);
        return;
    }
    cJSON *o = cJSON_ParseWithLength((const char *)r->buf + SYN_FRAME_HEADER, need);
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "kind");
    if (!cJSON_IsObject(o) || !cJSON_IsString(kind)) {
        cJSON_Delete(o);
        report_bad(r, "malformed JSON (an object with a string \"kind\" expected)");
        return;
    }
    if (strcmp(kind->valuestring, "heartbeat_refused") != 0) {
        syn_tunnel_log(t, SYNESIS_LOG_DEBUG, "edge report of unknown kind \"%.64s\" ignored",
                       kind->valuestring);
        cJSON_Delete(o);
        return;
    }
    uint64_t sid = 0, seq = 0;
    int has_sid = json_uint(cJSON_GetObjectItemCaseSensitive(o, "stream_id"), &sid);
    int has_seq = json_uint(cJSON_GetObjectItemCaseSensitive(o, "sequence"), &seq);
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(o, "reason");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (!has_sid) {
        cJSON_Delete(o);
        report_bad(r, "heartbeat_refused without an integer stream_id");
        return;
    }
    char d[320];
    snprintf(d, sizeof(d), "%.256s (error %.0f)",
             cJSON_IsString(reason) ? reason->valuestring : "no reason given",
             cJSON_IsNumber(error) ? error->valuedouble : (double)SYN_APP_BAD_FRAME);
    cJSON_Delete(o);
    report_heartbeat_refused(t, has_sid, sid, has_seq, seq, d);
}

static void report_data(void *obj, syn_qstream *s, const uint8_t *data, size_t len, int fin) {
    (void)s;
    syn_report *r = obj;
    if (r->bad)
        return;
    if (len > sizeof(r->buf) - r->len) {
        char d[96];
        snprintf(d, sizeof(d), "more than %d bytes", SYN_FRAME_HEADER + SYN_REPORT_MAX);
        report_bad(r, d);
        return;
    }
    if (len)
        memcpy(r->buf + r->len, data, len);
    r->len += len;
    if (r->len >= 1 && r->buf[0] != SYN_MSG_REPORT) {
        char d[64];
        snprintf(d, sizeof(d), "message type 0x%02x, not 0x%02x", r->buf[0], SYN_MSG_REPORT);
        report_bad(r, d);
        return;
    }
    if (r->len >= SYN_FRAME_HEADER) {
        uint32_t need = syn_frame_length(r->buf);
        if (need > SYN_REPORT_MAX) {
            char d[96];
            snprintf(d, sizeof(d), "length %u over the maximum of %d", need, SYN_REPORT_MAX);
            report_bad(r, d);
            return;
        }
    }
    if (fin)
        report_complete(r);
}

static void report_close(void *obj, syn_qstream *s, uint64_t app_code, int reset) {
    (void)s;
    (void)app_code;
    (void)reset;
    report_free(obj);
}

static const syn_stream_handler report_handler = {
    .data = report_data,
    .close = report_close,
};

int syn_report_open(synesis_tunnel *t, syn_qstream *s) {
    if (syn_qstream_bidi(s))
        return -1; /* the device grants the edge none */
    syn_report *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->base.h = &report_handler;
    r->t = t;
    r->qs = s;
    syn_list_push_front(&t->hb.reports, &r->link);
    syn_qstream_set_user(s, r);
    return 0;
}

size_t syn_reports_count(const synesis_tunnel *t) {
    size_t n = 0;
    const syn_report *r;
    SYN_LIST_FOREACH(r, &t->hb.reports, const syn_report, link)
        n++;
    return n;
}

void syn_reports_drop(synesis_tunnel *t, const syn_qconn *qc) {
    syn_report *r, *next;
    SYN_LIST_FOREACH_SAFE(r, next, &t->hb.reports, syn_report, link) {
        if (!qc || syn_qstream_conn(r->qs) == qc)
            report_free(r);
    }
}

void syn_heartbeat_conn_lost(synesis_tunnel *t, const syn_qconn *qc, const char *detail) {
    char d[SYNESIS_DETAIL_MAX];
    snprintf(d, sizeof(d), "the connection ended before the edge acknowledged it: %s",
             detail ? detail : "");
    syn_hb *h, *next;
    SYN_LIST_FOREACH_SAFE(h, next, &t->hb.live, syn_hb, link) {
        if (qc && syn_qstream_conn(h->qs) != qc)
            continue;
        hb_unlink(h);
        syn_qstream_set_user(h->qs, NULL);
        synesis_heartbeat_info info = h->info;
        int refused = h->refused;
        cJSON_Delete(h->vitals);
        free(h);
        if (refused)
            continue;
        t->stats.heartbeats_failed++;
        hb_result(t, &info, SYNESIS_ERR_CONNECTION_LOST, d);
        /* the callback may have changed the list: start over */
        next = SYN_LIST_FIRST(&t->hb.live, syn_hb, link);
    }
}

static size_t hb_live_count(const synesis_tunnel *t) {
    size_t n = 0;
    const syn_hb *h;
    SYN_LIST_FOREACH(h, &t->hb.live, const syn_hb, link)
        n++;
    return n;
}

/* early: in 0-RTT, on a connection attempt that resumes (syn_heartbeat_early). */
static void send_heartbeat_on(synesis_tunnel *t, int early) {
    synesis_heartbeat_info info = {
        .struct_size = sizeof(info),
        .sequence = t->hb.sequence++,
        .timestamp_ms = (int64_t)syn_wall_ms(),
        .detail = "",
    };
    if (t->qc)
        info.rtt_ms = t->state.latency_ms = syn_qconn_srtt_ms(t->qc);
    uint8_t *frame = NULL;
    size_t len = 0;
    syn_qstream *qs = NULL;
    syn_hb *h = NULL;
    cJSON *all = NULL;
    /* (the connection's number once it is up: counted at Connected) */
    uint64_t conn = t->stats.connections + (early ? 1 : 0);
    uint64_t ka_ms = t->qc ? syn_qconn_keep_alive_ns(t->qc) / 1000000
                           : (uint64_t)(t->cfg.keep_alive_interval * 1000);
    int has_ka = !(t->hb.ka_acked && t->hb.ka_conn == conn && t->hb.ka_ms == ka_ms);
    if (early ? !syn_qconn_early(t->qc) : !syn_tunnel_ready(t)) {
        info.status = SYNESIS_ERR_NOT_CONNECTED;
    } else if (hb_live_count(t) >= SYN_HB_MAX_LIVE) {
        info.status = SYNESIS_ERR_WOULD_BLOCK;
        syn_tunnel_log(t, SYNESIS_LOG_WARN,
                       "heartbeat %llu not sent: %d earlier heartbeats are still unacknowledged "
                       "(the edge returns no flow-control credit?)",
                       (unsigned long long)info.sequence, SYN_HB_MAX_LIVE);
    } else if (!(frame = build_frame(t, info.sequence, info.timestamp_ms, conn,
                                     has_ka ? &ka_ms : NULL, &all, &len))) {
        info.status = len ? SYNESIS_ERR_INVALID_ARGUMENT : SYNESIS_ERR_NOMEM;
        if (len)
            syn_tunnel_log(t, SYNESIS_LOG_WARN,
                           "heartbeat %llu: %zu bytes of JSON exceed the "
                           "maximum of %zu",
                           (unsigned long long)info.sequence, len, t->cfg.max_heartbeat_size);
    } else if (early ? !t->qc || !syn_qconn_early(t->qc) : !syn_tunnel_ready(t)) {
        /* on_vitals may have disconnected or freed the tunnel. */
        free(frame);
        info.status = SYNESIS_ERR_NOT_CONNECTED;
    } else if (!(h = calloc(1, sizeof(*h)))) {
        free(frame);
        info.status = SYNESIS_ERR_NOMEM;
    } else if ((info.status = early ? syn_qconn_open_stream_early(t->qc, 0, h, &qs)
                                    : syn_qconn_open_stream(t->qc, 0, h, &qs)) != 0) {
        free(frame);
        free(h);
    } else if ((info.status = syn_qstream_write_nocopy(qs, frame, len, free_frame, NULL, 1)) == 0) {
        info.size = len;
    }
    if (info.status == 0) {
        t->hb.answered = 0; /* an ack-eliciting packet: ngtcp2 starts counting again */
        t->stats.heartbeats_sent++;
        t->stats.bytes_sent += len;
        t->stats.last_heartbeat_sequence = info.sequence;
        t->stats.last_heartbeat_rtt_ms = info.rtt_ms;
        h->base.h = &hb_handler;
        h->t = t;
        h->qs = qs;
        h->info = info;
        h->stream_id = syn_qstream_id(qs);
        h->conn = conn;
        h->vitals = all;
        all = NULL;
        h->has_ka = has_ka;
        h->ka_ms = ka_ms;
        syn_list_push_front(&t->hb.live, &h->link);
        syn_qconn_schedule(t->qc);
    } else {
        if (qs) {
            /* Opened, but the frame could not be queued: the stream goes with its object. */
            syn_qstream_set_user(qs, NULL);
            syn_qstream_shutdown(qs, SYN_APP_INTERNAL);
            free(h);
        }
        t->stats.heartbeats_failed++;
        syn_tunnel_log(t, SYNESIS_LOG_WARN, "heartbeat %llu not sent: %s",
                       (unsigned long long)info.sequence, synesis_strerror(info.status));
    }
    cJSON_Delete(all);
    if (t->cb.on_heartbeat && !syn_hold_dying(&t->hold))
        t->cb.on_heartbeat(t, &info, t->user_data);
}

static void send_heartbeat(synesis_tunnel *t) { send_heartbeat_on(t, 0); }

void syn_heartbeat_early(synesis_tunnel *t) {
    if (t->cfg.heartbeat_interval <= 0 || !t->qc ||
        t->hb.early_attempt == t->handshake_started_ns || !syn_qconn_early(t->qc))
        return;
    t->hb.early_attempt = t->handshake_started_ns;
    send_heartbeat_on(t, 1);
}

static void hb_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    syn_tunnel_enter(t);
    t->wakes.heartbeat++;
    send_heartbeat(t);
    syn_tunnel_leave(t);
}

/* Whether this write pass answers a PING of the edge's whose ACK ngtcp2 (1.24) will make
 * ack-eliciting: after a packet that elicits an ACK, ngtcp2 sends ACK-only packets until the run
 * of them is older than the smoothed RTT, then adds a PING to the next one (so that the peer
 * acknowledges its ACKs). The edge's keep-alive PINGs come far more than an RTT apart: after a
 * packet of ours that elicits an ACK, the ACK of the first PING goes alone, the second carries
 * ngtcp2's PING, the third goes alone, and so on. Any packet of ours but these answers (our own
 * keep-alive PING, a request) starts the count again, as if it elicited an ACK; a wrong guess
 * costs a wake-up, nothing else. */
static int answers_acked_ping(synesis_tunnel *t) {
    syn_qconn_stats st;
    syn_qconn_get_stats(t->qc, &st);
    if (t->hb.pings_conn != t->stats.connections) {
        t->hb.pings_conn = t->stats.connections;
        t->hb.pings_seen = st.ping_recv;
        t->hb.pkts_seen = st.pkt_sent;
        t->hb.last_answering = 0;
        t->hb.answered = 0;
    }
    if (st.pkt_sent - t->hb.pkts_seen > (uint64_t)(t->hb.last_answering ? 1 : 0))
        t->hb.answered = 0; /* the write passes since the last call sent more than an answer */
    int answering = st.ping_recv != t->hb.pings_seen;
    t->hb.pings_seen = st.ping_recv;
    t->hb.pkts_seen = st.pkt_sent;
    t->hb.last_answering = answering;
    if (answering)
        t->hb.answered++;
    return answering && t->hb.answered % 2 == 0;
}

void syn_heartbeat_ride(synesis_tunnel *t) {
    double every = t->cfg.heartbeat_interval;
    if (every <= 0 || !ev_is_active(&t->hb.timer) || !syn_tunnel_ready(t))
        return;
    int acked_ping = answers_acked_ping(t);
    /* How early: one keep-alive interval, at most a third of the heartbeat's. An edge that
     * PINGs on our behalf does so every keep-alive interval (less a twentieth), so one arrives
     * within the interval before each heartbeat is due: every heartbeat rides on the wake-up and
     * in the packet of that PING's ACK instead of taking a timer wake-up and a datagram of its
     * own (half an interval let every second one miss it). And up to two keep-alive intervals
     * (at most two thirds of the heartbeat's) when that ACK is one ngtcp2 will add a PING to:
     * the heartbeat makes the packet ack-eliciting instead, and the edge's one ACK serves both,
     * where it would send one for ngtcp2's PING now and one for the heartbeat later (a wake-up
     * and a datagram each). With the defaults that spares about 50 of ngtcp2's 120 PINGs an
     * hour; the heartbeats keep their rate (below) and go 19 to 38 s apart instead of 28 to 38. */
    double early = t->cfg.keep_alive_interval;
    if (!(early > 0) || early > every / 3)
        early = every / 3;
    double early_acked = 2 * t->cfg.keep_alive_interval;
    if (!(early_acked > 0) || early_acked > every * 2 / 3)
        early_acked = every * 2 / 3;
    /* Due already (the first one, right after Connected): the timer sends it in this iteration. */
    double left = ev_timer_remaining(t->loop, &t->hb.timer);
    if (left <= 0 || left > (acked_ping ? early_acked : early))
        return;
    /* The timer keeps its phase: the next heartbeat is due one interval after this one was. */
    ev_timer_stop(t->loop, &t->hb.timer);
    ev_timer_set(&t->hb.timer, left + every, every);
    ev_timer_start(t->loop, &t->hb.timer);
    t->wakes.heartbeat_early++;
    send_heartbeat(t);
}

void syn_heartbeat_start(synesis_tunnel *t) {
    if (t->cfg.heartbeat_interval <= 0)
        return;
    ev_timer_stop(t->loop, &t->hb.timer);
    /* The first one goes right after Connected, from the loop rather than from inside the state
     * change; or one interval after the one this connection sent in 0-RTT. */
    double first = t->hb.early_attempt == t->handshake_started_ns ? t->cfg.heartbeat_interval : 0.;
    ev_timer_init(&t->hb.timer, hb_timer_cb, first, t->cfg.heartbeat_interval);
    t->hb.timer.data = t;
    ev_timer_start(t->loop, &t->hb.timer);
}

void syn_heartbeat_stop(synesis_tunnel *t) { ev_timer_stop(t->loop, &t->hb.timer); }

void syn_heartbeat_free(synesis_tunnel *t) {
    ev_timer_stop(t->loop, &t->hb.timer);
    free(t->hb.vitals_sampler);
    t->hb.vitals_sampler = NULL;
    cJSON_Delete(t->hb.acked_vitals);
    t->hb.acked_vitals = NULL;
}
