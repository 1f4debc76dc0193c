/* Graceful drain, the device's half (synesis_tunnel_drain), and the tunnel's view of a draining
 * edge (docs/protocol.md, "Drain"). */
#include "tunnel_int.h"

static int all_done(const synesis_tunnel *t) {
    return syn_list_empty(&t->req.live) && syn_list_empty(&t->req.wait) &&
           syn_list_empty(&t->streams.live) && syn_list_empty(&t->streams.wait);
}

static void finish(synesis_tunnel *t, int err, const char *detail) {
    t->drain.on = 0;
    ev_timer_stop(t->loop, &t->drain.grace);
    ev_timer_stop(t->loop, &t->drain.soon);
    syn_tunnel_log(t, SYNESIS_LOG_INFO, "drain done: %s", detail);
    (void)syn_tunnel_disconnect_err(t, err, detail);
}

static void soon_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    if (!t->drain.on)
        return;
    syn_tunnel_enter(t);
    if (t->state.kind != SYNESIS_STATE_CONNECTED)
        finish(t, SYNESIS_ERR_DRAINING, "the connection ended during the drain");
    else if (all_done(t))
        finish(t, SYNESIS_ERR_DRAINING, "nothing left in flight");
    syn_tunnel_leave(t);
}

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    synesis_tunnel *t = w->data;
    if (!t->drain.on)
        return;
    syn_tunnel_enter(t);
    finish(t, SYNESIS_ERR_DRAINING, "the drain's grace period ended before the response");
    syn_tunnel_leave(t);
}

void syn_drain_init(synesis_tunnel *t) {
    ev_timer_init(&t->drain.grace, grace_cb, 0., 0.);
    t->drain.grace.data = t;
    ev_timer_init(&t->drain.soon, soon_cb, 0., 0.);
    t->drain.soon.data = t;
}

void syn_drain_stop(synesis_tunnel *t) {
    t->drain.on = 0;
    ev_timer_stop(t->loop, &t->drain.grace);
    ev_timer_stop(t->loop, &t->drain.soon);
}

void syn_drain_note(synesis_tunnel *t) {
    if (t->drain.on && !ev_is_active(&t->drain.soon)) {
        ev_timer_set(&t->drain.soon, 0., 0.);
        ev_timer_start(t->loop, &t->drain.soon);
    }
}

void syn_tunnel_edge_draining(synesis_tunnel *t) {
    if (t->qc && t->drain.edge_qc != t->qc) {
        t->drain.edge_qc = t->qc;
        syn_tunnel_log(t, SYNESIS_LOG_INFO,
                       "the edge is draining this connection: new requests wait for the next");
    }
}

int syn_tunnel_edge_is_draining(const synesis_tunnel *t) {
    return t->qc && t->drain.edge_qc == t->qc;
}

/* A year: the bound of every duration of the API. */
#define DRAIN_MAX_GRACE (366.0 * 24 * 3600)

SYNESIS_API int synesis_tunnel_drain(synesis_tunnel *t, double grace) {
    if (!t || !(grace >= 0 && grace <= DRAIN_MAX_GRACE))
        return SYNESIS_ERR_INVALID_ARGUMENT;
    if (t->state.kind == SYNESIS_STATE_DISCONNECTED || t->state.kind == SYNESIS_STATE_FAILED)
        return SYNESIS_ERR_INVALID_STATE;
    if (syn_hold_dying(&t->hold))
        return SYNESIS_ERR_INVALID_STATE;
    syn_tunnel_enter(t);
    int rv = 0;
    if (t->state.kind != SYNESIS_STATE_CONNECTED) {
        rv = syn_tunnel_disconnect_err(t, SYNESIS_ERR_DRAINING, "drained while not connected");
    } else {
        if (!t->drain.on)
            syn_tunnel_log(t, SYNESIS_LOG_INFO, "draining: %.3f s at most", grace);
        t->drain.on = 1;
        ev_timer_stop(t->loop, &t->drain.grace);
        ev_timer_set(&t->drain.grace, grace, 0.);
        ev_timer_start(t->loop, &t->drain.grace);
        syn_drain_note(t);
    }
    syn_tunnel_leave(t);
    return rv;
}
