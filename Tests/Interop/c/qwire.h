/*
 * qwire: a small, single-threaded client for the Quizwire framed wire, protocol version 1.
 *
 * Written from docs/protocol.md alone (section numbers below refer to it). It shares no code
 * with the Swift implementation: protobuf payloads come from protoc-c (protobuf-c), compression
 * from zlib.
 *
 * Model: one connection (qw_conn) carries streams (qw_stream), each one call. Everything is
 * driven by qw_pump(), which handles exactly one incoming frame or one poll() round; every
 * blocking function of this API loops on it, so the client keeps reading (and answering PINGs,
 * returning credit) while it waits to write, for credit, or for a response.
 */
#ifndef QWIRE_H
#define QWIRE_H

#include <stddef.h>
#include <stdint.h>

/* ---- constants (§3, §4, §12) ---------------------------------------------------------- */

#define QW_PREFACE_LEN 8
#define QW_HEADER_LEN 10
#define QW_MAX_LENGTH 16777215u          /* 2^24 - 1: hard cap on a frame's length */
#define QW_MAX_WINDOW 2147483647u         /* 2^31 - 1 */
#define QW_MAX_STREAM_ID 2147483647u
#define QW_GOAWAY_MAX_DEBUG 1024u

extern const uint8_t QW_MAGIC[6];         /* 89 51 57 49 52 45 */

enum qw_frame_type {
  QW_SETTINGS = 0x01,
  QW_HEADERS = 0x02,
  QW_MESSAGE = 0x03,
  QW_TRAILERS = 0x04,
  QW_RST = 0x05,
  QW_WINDOW_UPDATE = 0x06,
  QW_PING = 0x07,
  QW_GOAWAY = 0x08,
};

#define QW_F_END_STREAM 0x01
#define QW_F_COMPRESSED 0x02
#define QW_F_MORE 0x04
#define QW_F_NO_MESSAGE 0x08
#define QW_F_ACK 0x01

enum qw_error_code {
  QW_NO_ERROR = 0x0,
  QW_PROTOCOL_ERROR = 0x1,
  QW_INTERNAL_ERROR = 0x2,
  QW_FLOW_CONTROL_ERROR = 0x3,
  QW_SETTINGS_TIMEOUT = 0x4,
  QW_STREAM_CLOSED = 0x5,
  QW_FRAME_SIZE_ERROR = 0x6,
  QW_REFUSED_STREAM = 0x7,
  QW_CANCEL = 0x8,
  QW_COMPRESSION_ERROR = 0x9,
  QW_ENHANCE_YOUR_CALM = 0xB,
  QW_INADEQUATE_SECURITY = 0xC,
  QW_UNSUPPORTED_VERSION = 0x10,
};

enum qw_setting_id {
  QW_S_MAX_FRAME_SIZE = 1,
  QW_S_INITIAL_STREAM_WINDOW = 2,
  QW_S_INITIAL_CONNECTION_WINDOW = 3,
  QW_S_MAX_CONCURRENT_STREAMS = 4,
  QW_S_MAX_HEADER_LIST_SIZE = 5,
  QW_S_MAX_MESSAGE_SIZE = 6,
  QW_S_ACCEPT_ENCODINGS = 7,
  QW_S_COUNT = 8, /* ids 1..7; index 0 unused */
};

/* gRPC status codes (§5.7) */
enum qw_status_code {
  QW_OK = 0, QW_CANCELLED = 1, QW_UNKNOWN = 2, QW_INVALID_ARGUMENT = 3, QW_DEADLINE_EXCEEDED = 4,
  QW_NOT_FOUND = 5, QW_ALREADY_EXISTS = 6, QW_PERMISSION_DENIED = 7, QW_RESOURCE_EXHAUSTED = 8,
  QW_FAILED_PRECONDITION = 9, QW_ABORTED = 10, QW_OUT_OF_RANGE = 11, QW_UNIMPLEMENTED = 12,
  QW_INTERNAL = 13, QW_UNAVAILABLE = 14, QW_DATA_LOSS = 15, QW_UNAUTHENTICATED = 16,
};

/* message encodings (§5.5, ACCEPT_ENCODINGS bits) */
enum qw_encoding { QW_ENC_IDENTITY = 0, QW_ENC_DEFLATE = 1, QW_ENC_GZIP = 2, QW_ENC_UNKNOWN = -1 };

const char *qw_error_code_name(uint32_t code);
const char *qw_status_name(int code);
const char *qw_frame_type_name(uint8_t type);
const char *qw_encoding_name(int enc);
int qw_encoding_from_name(const char *name); /* "", "identity" -> 0; unknown -> QW_ENC_UNKNOWN */

/* ---- growable byte buffer ------------------------------------------------------------- */

typedef struct qw_buf {
  uint8_t *data;
  size_t len, cap;
} qw_buf;

int qw_buf_reserve(qw_buf *b, size_t extra);
int qw_buf_append(qw_buf *b, const void *p, size_t n);
void qw_buf_free(qw_buf *b);

/* ---- frame codec (§3, §4) -------------------------------------------------------------- */

typedef struct qw_frame_header {
  uint32_t length;
  uint8_t type;
  uint8_t flags;
  uint32_t stream_id; /* all 32 bits as received (bit 31 is checked, not masked) */
} qw_frame_header;

void qw_put_u16(uint8_t *p, uint16_t v);
void qw_put_u32(uint8_t *p, uint32_t v);
uint16_t qw_get_u16(const uint8_t *p);
uint32_t qw_get_u32(const uint8_t *p);

void qw_encode_header(uint8_t out[QW_HEADER_LEN], const qw_frame_header *h);
void qw_decode_header(const uint8_t in[QW_HEADER_LEN], qw_frame_header *h);
void qw_encode_preface(uint8_t out[QW_PREFACE_LEN], uint16_t version);
/* 0 = magic ok (version stored), -1 = wrong magic */
int qw_decode_preface(const uint8_t in[QW_PREFACE_LEN], uint16_t *version);

static inline int qw_is_extension(uint8_t type) { return type >= 0x80; }

/*
 * §3.3 steps 1-6: uses only the 10-byte header (and the receiver's own limits); call it before
 * reading or allocating the payload. Extension frames get steps 1 and 3 only.
 * Returns 0, or the connection error code (QW_PROTOCOL_ERROR / QW_FRAME_SIZE_ERROR) with a
 * static reason.
 */
int qw_check_header(const qw_frame_header *h, uint32_t own_max_frame_size,
                    uint32_t own_max_header_list_size, const char **reason);
/*
 * §3.3 step 8 (direction): receiver_is_server = 1 when the frame travels client -> server.
 * Extension frames always pass. Returns 0 or QW_PROTOCOL_ERROR.
 */
int qw_check_direction(const qw_frame_header *h, int receiver_is_server, const char **reason);

/* ---- settings (§4.3) ------------------------------------------------------------------- */

typedef struct qw_settings {
  uint32_t v[QW_S_COUNT];
} qw_settings;

void qw_settings_default(qw_settings *s);
int qw_setting_valid(uint16_t id, uint32_t value); /* unknown ids are always valid */
/* applies entries in order; returns 0 or QW_PROTOCOL_ERROR (value out of range) */
int qw_settings_apply(qw_settings *s, const uint8_t *payload, size_t len, const char **reason);
/* writes a whole SETTINGS frame (header + entries); returns its size */
size_t qw_settings_frame(uint8_t *out, const uint16_t *ids, const uint32_t *values, size_t n);

/* ---- compression (§7.3) ---------------------------------------------------------------- */

/* whole-buffer compression with a fresh context; 0 ok, -1 failure. *out is malloc'ed. */
int qw_compress(int enc, const uint8_t *in, size_t len, uint8_t **out, size_t *out_len);
/*
 * Inflates one complete zlib (deflate) or gzip (one member) stream. Returns 0, -1 for bad data
 * (msg set), -2 when the output would exceed max_out (decompression bomb).
 */
int qw_decompress(int enc, const uint8_t *in, size_t len, size_t max_out, uint8_t **out,
                  size_t *out_len, char *msg, size_t msglen);

/* ---- metadata (§5.4) -------------------------------------------------------------------- */

typedef struct qw_md {
  char *key;
  int binary;      /* 1: -bin key, value is bytes */
  uint8_t *value;  /* NUL-terminated copy (text) or bytes */
  size_t len;
} qw_md;

/* which side's rules: request headers, response headers, trailers */
enum qw_md_place { QW_MD_REQUEST, QW_MD_RESPONSE_HEADERS, QW_MD_TRAILERS };
/* 0 ok, else -1 and msg explains (naming the key and the rule) */
int qw_md_check(const char *key, int binary, const uint8_t *value, size_t len, int place,
                char *msg, size_t msglen);
int qw_utf8_valid(const uint8_t *s, size_t n);

/* ---- connection and streams ------------------------------------------------------------- */

typedef struct qw_config {
  uint16_t version;              /* preface version to ask for (1; others for rejection tests) */
  uint32_t stream_window;        /* own INITIAL_STREAM_WINDOW (sent only if not the default) */
  uint32_t conn_window;          /* own INITIAL_CONNECTION_WINDOW (sent only if not default) */
  uint32_t max_message_size;     /* own MAX_MESSAGE_SIZE (always sent) */
  uint32_t accept_encodings;     /* own ACCEPT_ENCODINGS (always sent) */
  int connect_timeout_ms;        /* TCP connect; the handshake itself has the fixed 10 s (§2.3) */
  int keepalive_ms;              /* PING after this long without receiving (§10), 0 = off */
  int keepalive_timeout_ms;
} qw_config;

void qw_config_default(qw_config *cfg);

typedef struct qw_status {
  int code;
  char *message;                 /* malloc'ed, never NULL once set */
  uint8_t *details;              /* status_details bytes (TRAILERS), may be NULL */
  size_t details_len;
  const char *source;            /* "trailers", "rst", "client", "connection", "goaway" */
} qw_status;

typedef struct qw_msg {
  struct qw_msg *next;
  uint8_t *data;                 /* decompressed message bytes */
  size_t len;
  size_t wire_len;               /* bytes on the wire (all fragments) */
  int compressed;
  int fragments;
  uint64_t credit;               /* stream credit still to return when consumed (§9.4) */
} qw_msg;

enum qw_stream_state { QW_SS_OPEN, QW_SS_HALF_CLOSED_LOCAL, QW_SS_CLOSED };

typedef struct qw_conn qw_conn;

typedef struct qw_stream {
  struct qw_stream *next;        /* in the connection's table of open streams */
  qw_conn *conn;
  uint32_t id;                   /* 0 when no stream was opened (call failed before HEADERS) */
  int state;
  int in_table;
  int64_t send_window;
  int64_t recv_window;
  uint64_t recv_unreturned;      /* returnable, not yet returned stream credit */
  int64_t deadline_ns;           /* monotonic; 0 = none */
  int64_t timer_grace_ns;        /* the client's own timer fires at deadline_ns + this (0) */
  int deadline_passed;
  int req_encoding;
  /* response */
  int got_headers;
  int got_message;
  int resp_encoding;
  qw_md *headers_md;
  size_t n_headers_md;
  qw_md *trailers_md;
  size_t n_trailers_md;
  /* reassembly (§7.1, §17.4) */
  qw_buf frag;
  int in_message;
  int frag_compressed;
  int frag_count;
  uint64_t frag_credit_held;     /* fragment bytes whose credit waits for consumption */
  qw_msg *q_head, *q_tail;
  size_t q_count;
  /* result */
  int done;
  qw_status status;
  /* counters */
  uint64_t frames_sent, frames_sent_more, frames_recv, frames_recv_more;
  uint64_t window_updates_sent, window_updates_recv;
  uint64_t messages_recv;
} qw_stream;

struct qw_wframe;

struct qw_conn {
  int fd;
  qw_config cfg;
  qw_settings own;               /* what we advertised (defaults for what we did not send) */
  qw_settings peer;              /* the server's SETTINGS */
  int got_settings;
  int handshake_done;
  int preface_read;
  uint16_t peer_version;
  /* reading */
  qw_buf rbuf;
  size_t rpos;
  int header_checked;            /* the buffered header passed steps 1-6 */
  int64_t last_recv_ns;
  /* writing: control frames jump ahead of stream frames (§9.5) */
  struct qw_wframe *wq_head;
  size_t wq_bytes;
  /* streams */
  qw_stream *streams;            /* open streams */
  size_t n_open;
  uint32_t highest_id;
  /* flow control */
  int64_t conn_send_window;
  int64_t conn_recv_window;
  uint64_t conn_unreturned;
  /* ping */
  uint64_t ping_counter;
  uint8_t ping_out[8];
  int ping_outstanding;
  int64_t ping_sent_ns;
  int keepalive_ping;
  /* goaway */
  int goaway_received;
  uint32_t goaway_last_id;
  uint32_t goaway_code;
  char *goaway_debug;
  int goaway_sent;
  /* death */
  int dead;
  int dead_code;                 /* status code for calls: UNAVAILABLE (or INTERNAL) */
  char dead_msg[512];
  int conn_error_sent;           /* we detected a connection error and sent GOAWAY(code) */
  uint32_t conn_error_code;
  /* counters */
  uint64_t frames_sent[9], frames_recv[9], ext_frames_recv;
  uint64_t conn_window_updates_sent, pings_answered;
  /* trace (stderr) */
  int trace;
};

/* Connects to "host:port", writes preface + SETTINGS, reads the server's preface + SETTINGS.
 * On failure returns NULL and fills *st (code UNAVAILABLE, message; caller frees with
 * qw_status_clear). */
qw_conn *qw_connect(const char *hostport, const qw_config *cfg, qw_status *st);
/* Same handshake over an already connected socket (used by the vector replays). */
qw_conn *qw_connect_fd(int fd, const qw_config *cfg, qw_status *st);
/* GOAWAY(0, NO_ERROR) if idle and allowed (§11.4), close, free the connection and its open
 * streams (closed streams are freed by the caller with qw_stream_free). */
void qw_close(qw_conn *c);

/* One step: handle one buffered frame, or poll()/read()/write() until deadline_ns (monotonic,
 * 0 = wait without limit besides keepalive). Returns 0, or -1 once the connection is dead. */
int qw_pump(qw_conn *c, int64_t deadline_ns);
/* Writes everything queued; 0 ok, -1 dead or timed out. */
int qw_flush(qw_conn *c, int64_t deadline_ns);
/* PING with fresh opaque data, waits for the matching ACK. 0 ok, -1 failed. */
int qw_ping(qw_conn *c, int timeout_ms, int64_t *rtt_us);

/* Opens a stream (writes HEADERS). Always returns a stream object (NULL only on OOM); if the
 * call could not start, the stream is already done with its status (id may be 0).
 * timeout_us = 0: no deadline; otherwise the client's deadline is now + timeout_us, and the same
 * value is sent in RequestHeaders.timeout_us (§5.3). md_* may be NULL/0. */
qw_stream *qw_stream_open(qw_conn *c, const char *method, uint64_t timeout_us,
                          const qw_md *md, size_t n_md, int encoding, int end_stream);
/* Sends one message (compressed per the stream's encoding when it pays; split to the peer's
 * MAX_FRAME_SIZE and to the available credit). end_stream: set END_STREAM on its last fragment.
 * 0 ok, -1 the stream is done (see st->status). */
int qw_stream_send(qw_stream *s, const uint8_t *msg, size_t len, int end_stream);
/* NO_MESSAGE|END_STREAM (§4.5). 0 ok, -1 done. */
int qw_stream_half_close(qw_stream *s);
/* Next response message: 1 = *out set (caller frees with qw_msg_free), 0 = the stream is done
 * (s->status). Returns response HEADERS implicitly (s->got_headers, s->headers_md). */
int qw_stream_recv(qw_stream *s, qw_msg **out);
/* Waits for the response HEADERS (or the end of the stream). 1 = headers, 0 = done */
int qw_stream_wait_headers(qw_stream *s);
/* Application cancel: RST(CANCEL), status CANCELLED (§13). */
void qw_stream_cancel(qw_stream *s);
/* Frees a stream; cancels it first if it is still open. */
void qw_stream_free(qw_stream *s);
void qw_msg_free(qw_msg *m);
void qw_status_clear(qw_status *st);

int64_t qw_now_ns(void);

#endif
