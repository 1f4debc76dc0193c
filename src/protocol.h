/* Constants of the synesis-tunnel protocol (docs/protocol.md), shared by the tunnel and the edge.
 */
#ifndef SYNESIS_PROTOCOL_H
#define SYNESIS_PROTOCOL_H

/* ALPN. */
#define SYN_ALPN_DEFAULT "synesis-tunnel/1"

/* Message type of a heartbeat frame on a unidirectional stream. */
#define SYN_MSG_HEARTBEAT 0x01
/* Frame header: type byte + u32 big-endian length. */
#define SYN_FRAME_HEADER 5

/* Message type of an edge report on an edge-initiated unidirectional stream (docs/protocol.md,
 * "Reports"): 0x02, u32 big-endian length, JSON, then FIN. */
#define SYN_MSG_REPORT 0x02
/* Largest report JSON either side produces or accepts. */
#define SYN_REPORT_MAX 4096
/* Unidirectional streams a device lets the edge have open at once (for reports); the device
 * returns the credit as each one closes. */
#define SYN_DEVICE_PEER_UNI_STREAMS 8

/* Application error codes (RESET_STREAM, STOP_SENDING, CONNECTION_CLOSE). */
#define SYN_APP_NO_ERROR 0x0
#define SYN_APP_REFUSED 0x1
#define SYN_APP_INTERNAL 0x2
#define SYN_APP_BAD_FRAME 0x10
#define SYN_APP_TOO_LARGE 0x11
#define SYN_APP_TIMEOUT 0x12
#define SYN_APP_CANCELLED 0x13
/* RESET_STREAM + STOP_SENDING from a draining edge on a request stream it did not start: the edge's
 * application never saw it, the device may send it again on its next connection. */
#define SYN_APP_RETRY 0x14
/* CONNECTION_CLOSE from a draining edge: "reconnect now, elsewhere if you can" (the device
 * reconnects at once, without a backoff delay). */
#define SYN_APP_MOVE 0x15
/* The largest application error code (a QUIC varint): 2^62 - 1. */
#define SYN_APP_CODE_MAX 0x3fffffffffffffffull

#include <stddef.h>
#include <stdint.h>

/* Writes a frame header (type byte, u32 big-endian length) into out[SYN_FRAME_HEADER]. */
static inline void syn_frame_header(uint8_t *out, uint8_t type, size_t len) {
    out[0] = type;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

/* Reads the u32 big-endian length of a frame header. */
static inline uint32_t syn_frame_length(const uint8_t *hdr) {
    return (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 8 | hdr[4];
}

#endif /* SYNESIS_PROTOCOL_H */
