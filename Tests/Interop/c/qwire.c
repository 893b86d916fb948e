/*
 * qwire: Quizwire framed wire v1 client (see qwire.h). Section numbers refer to docs/protocol.md.
 */
#define _GNU_SOURCE
#include "qwire.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "wire/v1/frames.pb-c.h"

const uint8_t QW_MAGIC[6] = {0x89, 0x51, 0x57, 0x49, 0x52, 0x45};

#define HANDSHAKE_TIMEOUT_NS (10LL * 1000000000LL) /* §2.3 step 6 */
#define GOAWAY_FLUSH_NS (1000000000LL)

/* ---- names ---------------------------------------------------------------------------- */

const char *qw_error_code_name(uint32_t code) {
  switch (code) {
  case QW_NO_ERROR: return "NO_ERROR";
  case QW_PROTOCOL_ERROR: return "PROTOCOL_ERROR";
  case QW_INTERNAL_ERROR: return "INTERNAL_ERROR";
  case QW_FLOW_CONTROL_ERROR: return "FLOW_CONTROL_ERROR";
  case QW_SETTINGS_TIMEOUT: return "SETTINGS_TIMEOUT";
  case QW_STREAM_CLOSED: return "STREAM_CLOSED";
  case QW_FRAME_SIZE_ERROR: return "FRAME_SIZE_ERROR";
  case QW_REFUSED_STREAM: return "REFUSED_STREAM";
  case QW_CANCEL: return "CANCEL";
  case QW_COMPRESSION_ERROR: return "COMPRESSION_ERROR";
  case QW_ENHANCE_YOUR_CALM: return "ENHANCE_YOUR_CALM";
  case QW_INADEQUATE_SECURITY: return "INADEQUATE_SECURITY";
  case QW_UNSUPPORTED_VERSION: return "UNSUPPORTED_VERSION";
  default: return "UNKNOWN_CODE";
  }
}

const char *qw_status_name(int code) {
  static const char *names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                                "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  if (code < 0 || code > 16) return "UNKNOWN";
  return names[code];
}

const char *qw_frame_type_name(uint8_t type) {
  switch (type) {
  case QW_SETTINGS: return "SETTINGS";
  case QW_HEADERS: return "HEADERS";
  case QW_MESSAGE: return "MESSAGE";
  case QW_TRAILERS: return "TRAILERS";
  case QW_RST: return "RST";
  case QW_WINDOW_UPDATE: return "WINDOW_UPDATE";
  case QW_PING: return "PING";
  case QW_GOAWAY: return "GOAWAY";
  default: return type >= 0x80 ? "EXTENSION" : "UNDEFINED";
  }
}

const char *qw_encoding_name(int enc) {
  switch (enc) {
  case QW_ENC_IDENTITY: return "identity";
  case QW_ENC_DEFLATE: return "deflate";
  case QW_ENC_GZIP: return "gzip";
  default: return "unknown";
  }
}

int qw_encoding_from_name(const char *name) {
  if (name == NULL || name[0] == 0 || strcmp(name, "identity") == 0) return QW_ENC_IDENTITY;
  if (strcmp(name, "deflate") == 0) return QW_ENC_DEFLATE;
  if (strcmp(name, "gzip") == 0) return QW_ENC_GZIP;
  return QW_ENC_UNKNOWN;
}

/* ---- buffers, integers, time ---------------------------------------------------------- */

int qw_buf_reserve(qw_buf *b, size_t extra) {
  if (b->len + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra) cap *= 2;
  uint8_t *p = realloc(b->data, cap);
  if (!p) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

int qw_buf_append(qw_buf *b, const void *p, size_t n) {
  if (n == 0) return 0;
  if (qw_buf_reserve(b, n) < 0) return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void qw_buf_free(qw_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void qw_put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
void qw_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
uint16_t qw_get_u16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
uint32_t qw_get_u32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int64_t qw_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- frame codec ---------------------------------------------------------------------- */

void qw_encode_header(uint8_t out[QW_HEADER_LEN], const qw_frame_header *h) {
  qw_put_u32(out, h->length);
  out[4] = h->type;
  out[5] = h->flags;
  qw_put_u32(out + 6, h->stream_id);
}

void qw_decode_header(const uint8_t in[QW_HEADER_LEN], qw_frame_header *h) {
  h->length = qw_get_u32(in);
  h->type = in[4];
  h->flags = in[5];
  h->stream_id = qw_get_u32(in + 6);
}

void qw_encode_preface(uint8_t out[QW_PREFACE_LEN], uint16_t version) {
  memcpy(out, QW_MAGIC, 6);
  qw_put_u16(out + 6, version);
}

int qw_decode_preface(const uint8_t in[QW_PREFACE_LEN], uint16_t *version) {
  if (memcmp(in, QW_MAGIC, 6) != 0) return -1;
  *version = qw_get_u16(in + 6);
  return 0;
}

static uint8_t flag_mask(uint8_t type) {
  switch (type) {
  case QW_HEADERS: return 0x01;
  case QW_MESSAGE: return 0x0F;
  case QW_PING: return 0x01;
  default: return 0x00;
  }
}

int qw_check_header(const qw_frame_header *h, uint32_t own_max_frame_size,
                    uint32_t own_max_header_list_size, const char **reason) {
  const char *dummy;
  if (!reason) reason = &dummy;
  /* step 1 */
  if (h->stream_id & 0x80000000u) {
    *reason = "reserved bit 31 of the stream id is set";
    return QW_PROTOCOL_ERROR;
  }
  int ext = qw_is_extension(h->type);
  /* step 2 */
  if (!ext && (h->type == 0x00 || h->type >= 0x09)) {
    *reason = h->type == 0 ? "frame type 0x00 is reserved" : "frame type is not defined";
    return QW_PROTOCOL_ERROR;
  }
  /* step 3 */
  uint32_t limit = (h->type == QW_HEADERS || h->type == QW_TRAILERS) ? own_max_header_list_size
                                                                     : own_max_frame_size;
  if (limit > QW_MAX_LENGTH) limit = QW_MAX_LENGTH;
  if (h->length > limit) {
    *reason = (h->type == QW_HEADERS || h->type == QW_TRAILERS)
                  ? "frame length exceeds MAX_HEADER_LIST_SIZE"
                  : "frame length exceeds MAX_FRAME_SIZE";
    return QW_FRAME_SIZE_ERROR;
  }
  if (ext) return 0;
  /* step 4 */
  if (h->flags & (uint8_t)~flag_mask(h->type)) {
    *reason = "undefined flag bit set";
    return QW_PROTOCOL_ERROR;
  }
  /* step 5 */
  switch (h->type) {
  case QW_SETTINGS:
  case QW_PING:
  case QW_GOAWAY:
    if (h->stream_id != 0) {
      *reason = "frame must be on stream 0";
      return QW_PROTOCOL_ERROR;
    }
    break;
  case QW_HEADERS:
  case QW_MESSAGE:
  case QW_TRAILERS:
  case QW_RST:
    if (h->stream_id == 0) {
      *reason = "frame must not be on stream 0";
      return QW_PROTOCOL_ERROR;
    }
    break;
  default: break;
  }
  /* step 6 */
  switch (h->type) {
  case QW_RST:
  case QW_WINDOW_UPDATE:
    if (h->length != 4) {
      *reason = "payload must be exactly 4 bytes";
      return QW_FRAME_SIZE_ERROR;
    }
    break;
  case QW_PING:
    if (h->length != 8) {
      *reason = "PING payload must be exactly 8 bytes";
      return QW_FRAME_SIZE_ERROR;
    }
    break;
  case QW_GOAWAY:
    if (h->length < 8 || h->length > 8 + QW_GOAWAY_MAX_DEBUG) {
      *reason = "GOAWAY payload must be 8..1032 bytes";
      return QW_FRAME_SIZE_ERROR;
    }
    break;
  case QW_SETTINGS:
    if (h->length % 6 != 0 || h->length > 192) {
      *reason = "SETTINGS payload must be a multiple of 6 bytes, at most 32 entries";
      return QW_FRAME_SIZE_ERROR;
    }
    break;
  case QW_MESSAGE:
    if (h->flags & QW_F_NO_MESSAGE) {
      if (h->length != 0 || !(h->flags & QW_F_END_STREAM) ||
          (h->flags & (QW_F_COMPRESSED | QW_F_MORE))) {
        *reason = "NO_MESSAGE is only valid as flags 0x09 with an empty payload";
        return QW_PROTOCOL_ERROR;
      }
    }
    if ((h->flags & QW_F_MORE) && (h->flags & QW_F_END_STREAM)) {
      *reason = "MORE together with END_STREAM";
      return QW_PROTOCOL_ERROR;
    }
    if ((h->flags & QW_F_MORE) && h->length == 0) {
      *reason = "MORE with an empty payload";
      return QW_PROTOCOL_ERROR;
    }
    break;
  default: break;
  }
  return 0;
}

int qw_check_direction(const qw_frame_header *h, int receiver_is_server, const char **reason) {
  const char *dummy;
  if (!reason) reason = &dummy;
  if (qw_is_extension(h->type)) return 0;
  if (h->stream_id != 0 && (h->stream_id % 2) == 0) {
    *reason = "frame on an even stream id";
    return QW_PROTOCOL_ERROR;
  }
  if (receiver_is_server) {
    if (h->type == QW_TRAILERS) {
      *reason = "TRAILERS sent by a client";
      return QW_PROTOCOL_ERROR;
    }
  } else {
    if (h->type == QW_HEADERS && (h->flags & QW_F_END_STREAM)) {
      *reason = "END_STREAM on a server HEADERS";
      return QW_PROTOCOL_ERROR;
    }
    if (h->type == QW_MESSAGE && (h->flags & (QW_F_END_STREAM | QW_F_NO_MESSAGE))) {
      *reason = "END_STREAM or NO_MESSAGE on a server MESSAGE";
      return QW_PROTOCOL_ERROR;
    }
  }
  return 0;
}

/* ---- settings ------------------------------------------------------------------------- */

void qw_settings_default(qw_settings *s) {
  memset(s, 0, sizeof *s);
  s->v[QW_S_MAX_FRAME_SIZE] = 65536;
  s->v[QW_S_INITIAL_STREAM_WINDOW] = 262144;
  s->v[QW_S_INITIAL_CONNECTION_WINDOW] = 4194304;
  s->v[QW_S_MAX_CONCURRENT_STREAMS] = 1024;
  s->v[QW_S_MAX_HEADER_LIST_SIZE] = 16384;
  s->v[QW_S_MAX_MESSAGE_SIZE] = 4194304;
  s->v[QW_S_ACCEPT_ENCODINGS] = 1;
}

int qw_setting_valid(uint16_t id, uint32_t v) {
  switch (id) {
  case QW_S_MAX_FRAME_SIZE: return v >= 16384 && v <= 16777215;
  case QW_S_INITIAL_STREAM_WINDOW:
  case QW_S_INITIAL_CONNECTION_WINDOW: return v >= 65536 && v <= QW_MAX_WINDOW;
  case QW_S_MAX_CONCURRENT_STREAMS: return v <= QW_MAX_WINDOW;
  case QW_S_MAX_HEADER_LIST_SIZE: return v >= 1024 && v <= 16777215;
  case QW_S_MAX_MESSAGE_SIZE: return v >= 1024;
  case QW_S_ACCEPT_ENCODINGS: return (v & 1) != 0;
  default: return 1;
  }
}

int qw_settings_apply(qw_settings *s, const uint8_t *p, size_t len, const char **reason) {
  for (size_t i = 0; i + 6 <= len; i += 6) {
    uint16_t id = qw_get_u16(p + i);
    uint32_t v = qw_get_u32(p + i + 2);
    if (id < 1 || id >= QW_S_COUNT) continue; /* unknown ids are ignored */
    if (!qw_setting_valid(id, v)) {
      if (reason) *reason = "SETTINGS value out of range";
      return QW_PROTOCOL_ERROR;
    }
    s->v[id] = v;
  }
  return 0;
}

size_t qw_settings_frame(uint8_t *out, const uint16_t *ids, const uint32_t *values, size_t n) {
  qw_frame_header h = {(uint32_t)(n * 6), QW_SETTINGS, 0, 0};
  qw_encode_header(out, &h);
  for (size_t i = 0; i < n; i++) {
    qw_put_u16(out + QW_HEADER_LEN + i * 6, ids[i]);
    qw_put_u32(out + QW_HEADER_LEN + i * 6 + 2, values[i]);
  }
  return QW_HEADER_LEN + n * 6;
}

/* ---- compression ------------------------------------------------------------------------ */

int qw_compress(int enc, const uint8_t *in, size_t len, uint8_t **out, size_t *out_len) {
  if (enc != QW_ENC_DEFLATE && enc != QW_ENC_GZIP) return -1;
  if (len > 0xFFFFFFFFu) return -1;
  z_stream z;
  memset(&z, 0, sizeof z);
  /* deflate = zlib format (windowBits 15), gzip = windowBits 15 + 16 (§7.3) */
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, enc == QW_ENC_GZIP ? 31 : 15, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    return -1;
  uLong bound = deflateBound(&z, (uLong)len) + 32;
  uint8_t *buf = malloc(bound);
  if (!buf) {
    deflateEnd(&z);
    return -1;
  }
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)len;
  z.next_out = buf;
  z.avail_out = (uInt)bound;
  int ret = deflate(&z, Z_FINISH);
  if (ret != Z_STREAM_END) {
    deflateEnd(&z);
    free(buf);
    return -1;
  }
  *out_len = z.total_out;
  *out = buf;
  deflateEnd(&z);
  return 0;
}

int qw_decompress(int enc, const uint8_t *in, size_t len, size_t max_out, uint8_t **out,
                  size_t *out_len, char *msg, size_t msglen) {
  const char *name = enc == QW_ENC_GZIP ? "gzip" : "deflate";
  if (enc != QW_ENC_DEFLATE && enc != QW_ENC_GZIP) {
    snprintf(msg, msglen, "unknown encoding");
    return -1;
  }
  if (len > 0xFFFFFFFFu) {
    snprintf(msg, msglen, "compressed message too large");
    return -1;
  }
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, enc == QW_ENC_GZIP ? 31 : 15) != Z_OK) {
    snprintf(msg, msglen, "inflateInit2 failed");
    return -1;
  }
  size_t limit = max_out + 1; /* one byte more than allowed catches bombs */
  size_t cap = len * 4 + 64;
  if (cap > limit) cap = limit;
  if (cap > (size_t)1 << 20 && cap > len * 4 + 64) cap = (size_t)1 << 20;
  uint8_t *buf = malloc(cap ? cap : 1);
  if (!buf) {
    inflateEnd(&z);
    snprintf(msg, msglen, "out of memory");
    return -1;
  }
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)len;
  z.next_out = buf;
  z.avail_out = (uInt)cap;
  int rc = 0;
  for (;;) {
    if (z.avail_out == 0) {
      if (cap >= limit) {
        rc = -2;
        snprintf(msg, msglen, "decompressed message exceeds %zu bytes", max_out);
        break;
      }
      size_t ncap = cap * 2;
      if (ncap > limit) ncap = limit;
      if (ncap - z.total_out > 0xFFFFFFFFu) ncap = z.total_out + 0xFFFFFFFFu;
      uint8_t *nb = realloc(buf, ncap);
      if (!nb) {
        rc = -1;
        snprintf(msg, msglen, "out of memory");
        break;
      }
      buf = nb;
      z.next_out = buf + z.total_out;
      z.avail_out = (uInt)(ncap - z.total_out);
      cap = ncap;
    }
    int ret = inflate(&z, Z_NO_FLUSH);
    if (ret == Z_STREAM_END) {
      if (z.avail_in != 0) {
        rc = -1;
        snprintf(msg, msglen, "invalid %s data: %u trailing bytes after the compressed stream",
                 name, z.avail_in);
      }
      break;
    }
    if (ret == Z_OK) continue;
    if (ret == Z_BUF_ERROR && z.avail_out == 0) continue;
    if (ret == Z_BUF_ERROR) {
      rc = -1;
      snprintf(msg, msglen, "invalid %s data: truncated stream", name);
      break;
    }
    rc = -1;
    snprintf(msg, msglen, "invalid %s data: %s", name, z.msg ? z.msg : "inflate error");
    break;
  }
  if (rc == 0 && z.total_out > max_out) {
    rc = -2;
    snprintf(msg, msglen, "decompressed message exceeds %zu bytes", max_out);
  }
  if (rc == 0) {
    *out = buf;
    *out_len = z.total_out;
  } else {
    free(buf);
  }
  inflateEnd(&z);
  return rc;
}

/* ---- metadata and strings --------------------------------------------------------------- */

int qw_utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (n - i - 1 < need) return 0;
    for (size_t k = 1; k <= need; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    i += need + 1;
  }
  return 1;
}

int qw_md_check(const char *key, int binary, const uint8_t *value, size_t len, int place,
                char *msg, size_t msglen) {
  size_t klen = strlen(key);
  if (klen < 1 || klen > 255) {
    snprintf(msg, msglen, "invalid metadata key '%.64s': length must be 1..255 bytes", key);
    return -1;
  }
  for (size_t i = 0; i < klen; i++) {
    char ch = key[i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || ch == '_' || ch == '.' ||
          ch == '-')) {
      snprintf(msg, msglen, "invalid metadata key '%.64s': only [0-9a-z_.-] allowed", key);
      return -1;
    }
  }
  int is_bin = klen >= 4 && strcmp(key + klen - 4, "-bin") == 0;
  if (is_bin != (binary != 0)) {
    snprintf(msg, msglen, "invalid metadata key '%.64s': %s", key,
             is_bin ? "a -bin key must carry binary" : "a key without -bin must carry text");
    return -1;
  }
  if (!binary) {
    for (size_t i = 0; i < len; i++)
      if (value[i] < 0x20 || value[i] > 0x7E) {
        snprintf(msg, msglen, "invalid metadata key '%.64s': text must be printable ASCII", key);
        return -1;
      }
  }
  if (strncmp(key, "grpc-", 5) == 0) {
    int ok = (place == QW_MD_REQUEST && strcmp(key, "grpc-previous-rpc-attempts") == 0) ||
             (place == QW_MD_TRAILERS && strcmp(key, "grpc-retry-pushback-ms") == 0);
    if (!ok) {
      snprintf(msg, msglen, "invalid metadata key '%.64s': grpc- keys are reserved", key);
      return -1;
    }
  }
  return 0;
}

static void md_free(qw_md *md, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(md[i].key);
    free(md[i].value);
  }
  free(md);
}

/* Copies and validates received metadata. 0 ok, -1 invalid (msg). */
static int md_copy_in(Wire__V1__MetadataEntry **in, size_t n, int place, qw_md **out,
                      size_t *nout, char *msg, size_t msglen) {
  *out = NULL;
  *nout = 0;
  if (n == 0) return 0;
  qw_md *md = calloc(n, sizeof *md);
  if (!md) return -1;
  for (size_t i = 0; i < n; i++) {
    Wire__V1__MetadataEntry *e = in[i];
    const char *key = e->key ? e->key : "";
    size_t klen = strlen(key);
    int is_bin = klen >= 4 && strcmp(key + klen - 4, "-bin") == 0;
    int binary;
    const uint8_t *v;
    size_t vlen;
    if (e->value_case == WIRE__V1__METADATA_ENTRY__VALUE_TEXT) {
      binary = 0;
      v = (const uint8_t *)e->text;
      vlen = strlen(e->text);
    } else if (e->value_case == WIRE__V1__METADATA_ENTRY__VALUE_BINARY) {
      binary = 1;
      v = e->binary.data;
      vlen = e->binary.len;
    } else { /* oneof unset: an empty value of the key's kind (§5.4) */
      binary = is_bin;
      v = (const uint8_t *)"";
      vlen = 0;
    }
    md[i].key = strdup(key);
    md[i].binary = binary;
    md[i].value = malloc(vlen + 1);
    md[i].len = vlen;
    if (md[i].value) {
      if (vlen) memcpy(md[i].value, v, vlen);
      md[i].value[vlen] = 0;
    }
    *nout = i + 1;
    if (!qw_utf8_valid((const uint8_t *)key, klen) ||
        qw_md_check(key, binary, v, vlen, place, msg, msglen) < 0) {
      if (!qw_utf8_valid((const uint8_t *)key, klen))
        snprintf(msg, msglen, "invalid metadata key: not UTF-8");
      *out = md;
      return -1;
    }
  }
  *out = md;
  return 0;
}

/* ---- status ----------------------------------------------------------------------------- */

void qw_status_clear(qw_status *st) {
  free(st->message);
  free(st->details);
  memset(st, 0, sizeof *st);
}

static void status_set(qw_status *st, int code, const char *source, const char *fmt, ...) {
  char tmp[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  free(st->message);
  st->message = strdup(tmp);
  st->code = code;
  st->source = source;
}

/* ---- write queue ------------------------------------------------------------------------- */

struct qw_wframe {
  struct qw_wframe *next;
  int control;     /* jumps ahead of stream frames not yet started (§9.5) */
  int is_message;  /* MESSAGE frame (discardable when its stream closes) */
  uint32_t sid;
  uint32_t msg_len;
  size_t len, off;
  uint8_t data[];
};

static void trace_frame(qw_conn *c, const char *dir, const qw_frame_header *h,
                        const uint8_t *payload) {
  if (!c->trace) return;
  fprintf(stderr, "[qwire] %s %s len=%u flags=0x%02x stream=%u", dir,
          qw_frame_type_name(h->type), h->length, h->flags, h->stream_id);
  if ((h->type == QW_RST || h->type == QW_WINDOW_UPDATE) && h->length == 4)
    fprintf(stderr, " value=%u", qw_get_u32(payload));
  if (h->type == QW_TRAILERS || (h->type == QW_HEADERS && h->length > 0)) {
    fprintf(stderr, " payload=");
    for (uint32_t i = 0; i < h->length && i < 96; i++) fprintf(stderr, "%02x", payload[i]);
  }
  if (h->type == QW_GOAWAY && h->length >= 8)
    fprintf(stderr, " last=%u code=%s debug=\"%.*s\"", qw_get_u32(payload) & 0x7fffffff,
            qw_error_code_name(qw_get_u32(payload + 4)), (int)(h->length - 8), payload + 8);
  fprintf(stderr, "\n");
}

static int enqueue_raw(qw_conn *c, int control, const uint8_t *bytes, size_t len) {
  struct qw_wframe *f = malloc(sizeof *f + len);
  if (!f) return -1;
  f->next = NULL;
  f->control = control;
  f->is_message = 0;
  f->sid = 0;
  f->msg_len = 0;
  f->len = len;
  f->off = 0;
  memcpy(f->data, bytes, len);
  struct qw_wframe **pp = &c->wq_head;
  if (control) {
    while (*pp && ((*pp)->control || ((*pp) == c->wq_head && (*pp)->off > 0))) pp = &(*pp)->next;
    f->next = *pp;
    *pp = f;
  } else {
    while (*pp) pp = &(*pp)->next;
    *pp = f;
  }
  c->wq_bytes += len;
  return 0;
}

static int enqueue_frame(qw_conn *c, int control, uint8_t type, uint8_t flags, uint32_t sid,
                         const uint8_t *payload, size_t len) {
  struct qw_wframe *f = malloc(sizeof *f + QW_HEADER_LEN + len);
  if (!f) return -1;
  qw_frame_header h = {(uint32_t)len, type, flags, sid};
  qw_encode_header(f->data, &h);
  if (len) memcpy(f->data + QW_HEADER_LEN, payload, len);
  f->next = NULL;
  f->control = control;
  f->is_message = type == QW_MESSAGE;
  f->sid = sid;
  f->msg_len = (uint32_t)len;
  f->len = QW_HEADER_LEN + len;
  f->off = 0;
  struct qw_wframe **pp = &c->wq_head;
  if (control) {
    while (*pp && ((*pp)->control || ((*pp) == c->wq_head && (*pp)->off > 0))) pp = &(*pp)->next;
  } else {
    while (*pp) pp = &(*pp)->next;
  }
  f->next = *pp;
  *pp = f;
  c->wq_bytes += f->len;
  if (type < 9) c->frames_sent[type]++;
  trace_frame(c, "->", &h, payload);
  return 0;
}

/* Drops MESSAGE frames of a stream that were not started; their credit comes back. */
static void discard_stream_messages(qw_conn *c, uint32_t sid) {
  struct qw_wframe **pp = &c->wq_head;
  while (*pp) {
    struct qw_wframe *f = *pp;
    if (f->is_message && f->sid == sid && f->off == 0) {
      *pp = f->next;
      c->wq_bytes -= f->len;
      c->conn_send_window += f->msg_len;
      free(f);
    } else {
      pp = &f->next;
    }
  }
}

static void send_rst(qw_conn *c, uint32_t sid, uint32_t code) {
  uint8_t p[4];
  qw_put_u32(p, code);
  discard_stream_messages(c, sid);
  /* Not a "control" frame here: an RST must never overtake its own stream's HEADERS. */
  enqueue_frame(c, 0, QW_RST, 0, sid, p, 4);
}

static void send_window_update(qw_conn *c, uint32_t sid, uint32_t inc) {
  uint8_t p[4];
  qw_put_u32(p, inc);
  enqueue_frame(c, 1, QW_WINDOW_UPDATE, 0, sid, p, 4);
}

static void send_goaway(qw_conn *c, uint32_t code, const char *debug) {
  size_t dl = strlen(debug);
  if (dl > QW_GOAWAY_MAX_DEBUG) dl = QW_GOAWAY_MAX_DEBUG;
  uint8_t p[8 + QW_GOAWAY_MAX_DEBUG];
  qw_put_u32(p, 0); /* a client's last_stream_id is always 0 in v1 (§11.1) */
  qw_put_u32(p + 4, code);
  memcpy(p + 8, debug, dl);
  enqueue_frame(c, 1, QW_GOAWAY, 0, 0, p, 8 + dl);
  c->goaway_sent = 1;
}

/* ---- streams: finishing ---------------------------------------------------------------- */

static void free_queue(qw_stream *s) {
  qw_msg *m = s->q_head;
  while (m) {
    qw_msg *n = m->next;
    qw_msg_free(m);
    m = n;
  }
  s->q_head = s->q_tail = NULL;
  s->q_count = 0;
}

static void unlink_stream(qw_conn *c, qw_stream *s) {
  if (!s->in_table) return;
  qw_stream **pp = &c->streams;
  while (*pp && *pp != s) pp = &(*pp)->next;
  if (*pp) *pp = s->next;
  s->next = NULL;
  s->in_table = 0;
  c->n_open--;
}

/* Ends the call: status, frees per-stream state (§8.2). keep_queue: messages that arrived
 * before TRAILERS are still delivered; on failures they are dropped. */
static void finish(qw_stream *s, int code, const char *source, int keep_queue, const char *fmt,
                   ...) {
  if (s->done) return;
  char tmp[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  status_set(&s->status, code, source, "%s", tmp);
  s->done = 1;
  s->state = QW_SS_CLOSED;
  qw_buf_free(&s->frag);
  s->in_message = 0;
  if (!keep_queue) free_queue(s);
  if (s->conn) {
    if (s->id) discard_stream_messages(s->conn, s->id);
    unlink_stream(s->conn, s);
  }
}

static qw_stream *find_stream(qw_conn *c, uint32_t sid) {
  for (qw_stream *s = c->streams; s; s = s->next)
    if (s->id == sid) return s;
  return NULL;
}

/* ---- connection death -------------------------------------------------------------------- */

static void close_fd(qw_conn *c) {
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
}

static void mark_dead(qw_conn *c, int code, const char *fmt, ...) {
  if (c->dead) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->dead_msg, sizeof c->dead_msg, fmt, ap);
  va_end(ap);
  c->dead = 1;
  c->dead_code = code;
  while (c->streams) finish(c->streams, code, "connection", 0, "%s", c->dead_msg);
  struct qw_wframe *f = c->wq_head;
  while (f) {
    struct qw_wframe *n = f->next;
    free(f);
    f = n;
  }
  c->wq_head = NULL;
  c->wq_bytes = 0;
  close_fd(c);
}

static int write_some(qw_conn *c);

/* Connection error detected by us (§11.5): GOAWAY(0, code, reason), flush, close. */
static void conn_error(qw_conn *c, uint32_t code, const char *reason) {
  if (c->dead) return;
  if (c->trace) fprintf(stderr, "[qwire] connection error %s: %s\n", qw_error_code_name(code), reason);
  if (!c->goaway_received && c->fd >= 0) { /* §11.3: never answer a GOAWAY with a GOAWAY */
    send_goaway(c, code, reason);
    c->conn_error_sent = 1;
    c->conn_error_code = code;
    int64_t until = qw_now_ns() + GOAWAY_FLUSH_NS;
    while (c->wq_head && qw_now_ns() < until) {
      struct pollfd pfd = {c->fd, POLLOUT, 0};
      if (poll(&pfd, 1, 50) < 0 && errno != EINTR) break;
      if (write_some(c) < 0) break;
    }
  }
  mark_dead(c, QW_UNAVAILABLE, "connection error %s: %s", qw_error_code_name(code), reason);
}

/* ---- receiving ---------------------------------------------------------------------------- */

static void return_conn_credit(qw_conn *c, uint32_t n) {
  c->conn_unreturned += n;
  uint64_t half = c->own.v[QW_S_INITIAL_CONNECTION_WINDOW] / 2;
  if (c->conn_unreturned >= half && c->conn_unreturned > 0) {
    uint32_t inc = (uint32_t)c->conn_unreturned;
    send_window_update(c, 0, inc);
    c->conn_recv_window += inc;
    c->conn_unreturned = 0;
    c->conn_window_updates_sent++;
  }
}

static void return_stream_credit(qw_stream *s, uint64_t n) {
  qw_conn *c = s->conn;
  if (!c || s->done) return; /* no stream WINDOW_UPDATE once the stream is closed (§9.4) */
  s->recv_unreturned += n;
  uint64_t half = c->own.v[QW_S_INITIAL_STREAM_WINDOW] / 2;
  if (s->recv_unreturned >= half && s->recv_unreturned > 0) {
    uint32_t inc = (uint32_t)s->recv_unreturned;
    send_window_update(c, s->id, inc);
    s->recv_window += inc;
    s->recv_unreturned = 0;
    s->window_updates_sent++;
  }
}

static void stream_error(qw_stream *s, int status, uint32_t rst_code, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  qw_conn *c = s->conn;
  uint32_t sid = s->id;
  finish(s, status, "client", 0, "%s", tmp);
  if (c && rst_code != 0xFFFFFFFFu) send_rst(c, sid, rst_code);
}

static void on_headers(qw_conn *c, qw_stream *s, const uint8_t *p, uint32_t len) {
  if (s->got_headers || s->got_message) {
    stream_error(s, QW_INTERNAL, QW_PROTOCOL_ERROR,
                 s->got_headers ? "second response HEADERS" : "response HEADERS after MESSAGE");
    return;
  }
  Wire__V1__ResponseHeaders *rh = wire__v1__response_headers__unpack(NULL, len, p);
  if (!rh || !qw_utf8_valid((const uint8_t *)rh->message_encoding, strlen(rh->message_encoding))) {
    if (rh) wire__v1__response_headers__free_unpacked(rh, NULL);
    stream_error(s, QW_INTERNAL, QW_PROTOCOL_ERROR, "undecodable ResponseHeaders");
    return;
  }
  s->got_headers = 1;
  char msg[300];
  if (md_copy_in(rh->metadata, rh->n_metadata, QW_MD_RESPONSE_HEADERS, &s->headers_md,
                 &s->n_headers_md, msg, sizeof msg) < 0) {
    wire__v1__response_headers__free_unpacked(rh, NULL);
    stream_error(s, QW_INTERNAL, QW_CANCEL, "invalid metadata from server: %s", msg);
    return;
  }
  int enc = qw_encoding_from_name(rh->message_encoding);
  if (enc == QW_ENC_UNKNOWN || !(c->own.v[QW_S_ACCEPT_ENCODINGS] & (1u << enc))) {
    stream_error(s, QW_INTERNAL, QW_CANCEL, "unsupported response message encoding '%.64s'",
                 rh->message_encoding);
    wire__v1__response_headers__free_unpacked(rh, NULL);
    return;
  }
  s->resp_encoding = enc;
  wire__v1__response_headers__free_unpacked(rh, NULL);
  (void)c;
}

static void on_message(qw_conn *c, qw_stream *s, const qw_frame_header *h, const uint8_t *p) {
  uint32_t len = h->length;
  if (!s->got_headers) {
    stream_error(s, QW_INTERNAL, QW_PROTOCOL_ERROR, "response MESSAGE before HEADERS");
    return;
  }
  /* stream window (§9.3) */
  if ((int64_t)len > s->recv_window) {
    stream_error(s, QW_INTERNAL, QW_FLOW_CONTROL_ERROR,
                 "stream window overrun: %u bytes with %lld credit", len,
                 (long long)s->recv_window);
    return;
  }
  s->recv_window -= len;
  s->frames_recv++;
  int compressed = (h->flags & QW_F_COMPRESSED) != 0;
  if (!s->in_message) {
    s->frag_compressed = compressed;
    s->frag_count = 0;
    s->frag.len = 0;
    s->frag_credit_held = 0;
    if (compressed && s->resp_encoding == QW_ENC_IDENTITY) {
      stream_error(s, QW_INTERNAL, QW_CANCEL,
                   "compressed message but the response's message_encoding is identity");
      return;
    }
  } else if (s->frag_compressed != compressed) {
    stream_error(s, QW_INTERNAL, QW_PROTOCOL_ERROR,
                 "COMPRESSED flag changed between fragments of one message");
    return;
  }
  uint32_t own_max = c->own.v[QW_S_MAX_MESSAGE_SIZE];
  if (s->frag.len + len > own_max) {
    stream_error(s, QW_RESOURCE_EXHAUSTED, QW_CANCEL,
                 "response message exceeds the client's limit of %u bytes (MAX_MESSAGE_SIZE)",
                 own_max);
    return;
  }
  if (qw_buf_append(&s->frag, p, len) < 0) {
    stream_error(s, QW_RESOURCE_EXHAUSTED, QW_CANCEL, "out of memory");
    return;
  }
  s->frag_count++;
  if (h->flags & QW_F_MORE) {
    s->frames_recv_more++;
    s->in_message = 1;
    /* §9.4: a fragment's credit is returnable on arrival if no complete message is queued
     * ahead of it (prevents the message-larger-than-window deadlock). */
    if (s->q_count == 0)
      return_stream_credit(s, len);
    else
      s->frag_credit_held += len;
    return;
  }
  /* complete message */
  s->in_message = 0;
  qw_msg *m = calloc(1, sizeof *m);
  if (!m) {
    stream_error(s, QW_RESOURCE_EXHAUSTED, QW_CANCEL, "out of memory");
    return;
  }
  m->wire_len = s->frag.len;
  m->compressed = compressed;
  m->fragments = s->frag_count;
  m->credit = s->frag_credit_held + len;
  if (compressed) {
    char msg[300];
    uint8_t *out = NULL;
    size_t out_len = 0;
    int rc = qw_decompress(s->resp_encoding, s->frag.data, s->frag.len, own_max, &out, &out_len,
                           msg, sizeof msg);
    if (rc == -2) {
      free(m);
      stream_error(s, QW_RESOURCE_EXHAUSTED, QW_CANCEL,
                   "response message exceeds the client's limit of %u bytes (MAX_MESSAGE_SIZE)",
                   own_max);
      return;
    }
    if (rc < 0) {
      free(m);
      stream_error(s, QW_INTERNAL, QW_CANCEL, "%s", msg);
      return;
    }
    m->data = out;
    m->len = out_len;
    s->frag.len = 0;
  } else {
    /* hand over the buffer */
    m->data = s->frag.data;
    m->len = s->frag.len;
    s->frag.data = NULL;
    s->frag.len = s->frag.cap = 0;
  }
  s->frag_credit_held = 0;
  s->got_message = 1;
  s->messages_recv++;
  if (s->q_tail)
    s->q_tail->next = m;
  else
    s->q_head = m;
  s->q_tail = m;
  s->q_count++;
}

static void on_trailers(qw_conn *c, qw_stream *s, const uint8_t *p, uint32_t len) {
  (void)c;
  if (s->in_message) {
    finish(s, QW_INTERNAL, "client", 0, "TRAILERS while a response message is incomplete");
    return;
  }
  Wire__V1__Trailers *t = wire__v1__trailers__unpack(NULL, len, p);
  if (!t || !qw_utf8_valid((const uint8_t *)t->message, strlen(t->message))) {
    if (t) wire__v1__trailers__free_unpacked(t, NULL);
    finish(s, QW_INTERNAL, "client", 0, "undecodable Trailers");
    return;
  }
  char msg[300];
  if (md_copy_in(t->metadata, t->n_metadata, QW_MD_TRAILERS, &s->trailers_md, &s->n_trailers_md,
                 msg, sizeof msg) < 0) {
    wire__v1__trailers__free_unpacked(t, NULL);
    finish(s, QW_INTERNAL, "client", 0, "invalid metadata from server: %s", msg);
    return;
  }
  int code = t->code > 16 ? QW_UNKNOWN : (int)t->code;
  finish(s, code, "trailers", 1, "%s", t->message);
  if (t->status_details.len) {
    s->status.details = malloc(t->status_details.len);
    if (s->status.details) {
      memcpy(s->status.details, t->status_details.data, t->status_details.len);
      s->status.details_len = t->status_details.len;
    }
  }
  wire__v1__trailers__free_unpacked(t, NULL);
}

static void on_rst(qw_conn *c, qw_stream *s, uint32_t code) {
  (void)c;
  const char *name = qw_error_code_name(code);
  if (!strcmp(name, "UNKNOWN_CODE") || code == QW_UNSUPPORTED_VERSION) {
    code = QW_INTERNAL_ERROR; /* §12.1 */
    name = "INTERNAL_ERROR";
  }
  int status;
  switch (code) {
  case QW_REFUSED_STREAM: status = QW_UNAVAILABLE; break;
  case QW_CANCEL:
    status = (s->deadline_ns && qw_now_ns() >= s->deadline_ns) ? QW_DEADLINE_EXCEEDED
                                                               : QW_CANCELLED;
    break;
  case QW_ENHANCE_YOUR_CALM: status = QW_RESOURCE_EXHAUSTED; break;
  case QW_INADEQUATE_SECURITY: status = QW_PERMISSION_DENIED; break;
  default: status = QW_INTERNAL; break;
  }
  if (code == QW_REFUSED_STREAM)
    finish(s, status, "rst", 0, "stream reset by server: %s (not processed; safe to retry)", name);
  else
    finish(s, status, "rst", 0, "stream reset by server: %s", name);
}

static void sanitize_text(char *dst, const uint8_t *src, size_t n) {
  /* diagnostics only: keep printable ASCII and valid UTF-8 sequences, replace the rest */
  size_t j = 0;
  size_t i = 0;
  while (i < n) {
    uint8_t ch = src[i];
    if (ch >= 0x20 && ch < 0x7F) {
      dst[j++] = (char)ch;
      i++;
      continue;
    }
    size_t k = 2;
    int ok = 0;
    for (; k <= 4 && i + k <= n; k++)
      if (qw_utf8_valid(src + i, k)) {
        ok = 1;
        break;
      }
    if (ok && ch >= 0x80) {
      memcpy(dst + j, src + i, k);
      j += k;
      i += k;
    } else {
      dst[j++] = '?';
      i++;
    }
  }
  dst[j] = 0;
}

static void on_goaway(qw_conn *c, const uint8_t *p, uint32_t len) {
  uint32_t last = qw_get_u32(p) & 0x7fffffffu; /* bit 31 ignored (§4.10) */
  uint32_t code = qw_get_u32(p + 4);
  char debug[4 * QW_GOAWAY_MAX_DEBUG + 1];
  sanitize_text(debug, p + 8, len - 8);
  if (c->goaway_received && last > c->goaway_last_id) {
    /* a raise is a connection error; after a GOAWAY the client just closes (§11.3) */
    mark_dead(c, QW_UNAVAILABLE, "server raised GOAWAY last_stream_id from %u to %u",
              c->goaway_last_id, last);
    return;
  }
  c->goaway_received = 1;
  c->goaway_last_id = last;
  c->goaway_code = code;
  free(c->goaway_debug);
  c->goaway_debug = strdup(debug);
  if (!c->got_settings) {
    /* a rejection instead of SETTINGS (§2.3 step 4): the attempt fails UNAVAILABLE */
    mark_dead(c, QW_UNAVAILABLE, "server rejected the connection: GOAWAY(%s): %s",
              qw_error_code_name(code), debug);
    return;
  }
  qw_stream *s = c->streams;
  while (s) {
    qw_stream *n = s->next;
    if (s->id > last)
      finish(s, QW_UNAVAILABLE, "goaway", 0,
             "not processed by the server (GOAWAY); safe to retry");
    s = n;
  }
}

/* One complete frame (steps 7-9). */
static void handle_frame(qw_conn *c, const qw_frame_header *h, const uint8_t *p) {
  const char *reason = NULL;
  trace_frame(c, "<-", h, p);
  /* step 7: connection sequencing */
  if (!c->got_settings) {
    if (h->type != QW_SETTINGS && h->type != QW_GOAWAY) {
      conn_error(c, QW_PROTOCOL_ERROR, "first frame after the preface must be SETTINGS or GOAWAY");
      return;
    }
  } else if (h->type == QW_SETTINGS) {
    conn_error(c, QW_PROTOCOL_ERROR, "second SETTINGS frame");
    return;
  }
  if (qw_is_extension(h->type)) {
    c->ext_frames_recv++;
    return; /* ignored: no effect on streams, flow control or keepalive (§4.11) */
  }
  c->last_recv_ns = qw_now_ns();
  if (h->type < 9) c->frames_recv[h->type]++;
  /* step 8: direction */
  int code = qw_check_direction(h, 0, &reason);
  if (code) {
    conn_error(c, (uint32_t)code, reason);
    return;
  }
  /* step 9 */
  switch (h->type) {
  case QW_SETTINGS: {
    if (c->peer_version != c->cfg.version) {
      conn_error(c, QW_UNSUPPORTED_VERSION, "server answered with another protocol version");
      return;
    }
    code = qw_settings_apply(&c->peer, p, h->length, &reason);
    if (code) {
      conn_error(c, (uint32_t)code, reason);
      return;
    }
    c->got_settings = 1;
    c->conn_send_window = c->peer.v[QW_S_INITIAL_CONNECTION_WINDOW];
    return;
  }
  case QW_PING:
    if (h->flags & QW_F_ACK) {
      if (c->ping_outstanding && memcmp(p, c->ping_out, 8) == 0) {
        c->ping_outstanding = 0;
        c->keepalive_ping = 0;
      }
    } else {
      enqueue_frame(c, 1, QW_PING, QW_F_ACK, 0, p, 8); /* same 8 bytes, ahead of stream frames */
      c->pings_answered++;
    }
    return;
  case QW_GOAWAY: on_goaway(c, p, h->length); return;
  case QW_WINDOW_UPDATE: {
    uint32_t inc = qw_get_u32(p);
    if (h->stream_id == 0) {
      if (inc == 0) {
        conn_error(c, QW_PROTOCOL_ERROR, "WINDOW_UPDATE increment 0 on stream 0");
        return;
      }
      if (c->conn_send_window + (int64_t)inc > (int64_t)QW_MAX_WINDOW) {
        conn_error(c, QW_FLOW_CONTROL_ERROR, "connection window overflow");
        return;
      }
      c->conn_send_window += inc;
      return;
    }
    if (h->stream_id > c->highest_id) {
      conn_error(c, QW_PROTOCOL_ERROR, "WINDOW_UPDATE on a never-opened stream");
      return;
    }
    qw_stream *s = find_stream(c, h->stream_id);
    if (!s) return; /* closed: ignored whatever the increment */
    s->window_updates_recv++;
    if (inc == 0) {
      stream_error(s, QW_INTERNAL, QW_PROTOCOL_ERROR, "WINDOW_UPDATE increment 0 on stream %u",
                   h->stream_id);
      return;
    }
    if (s->send_window + (int64_t)inc > (int64_t)QW_MAX_WINDOW) {
      stream_error(s, QW_INTERNAL, QW_FLOW_CONTROL_ERROR, "stream window overflow");
      return;
    }
    s->send_window += inc;
    return;
  }
  default: break;
  }
  /* stream frames: HEADERS, MESSAGE, TRAILERS, RST (stream id odd and non-zero here) */
  if (h->stream_id > c->highest_id) {
    char r[100];
    snprintf(r, sizeof r, "%s on never-opened stream %u", qw_frame_type_name(h->type),
             h->stream_id);
    conn_error(c, QW_PROTOCOL_ERROR, r);
    return;
  }
  if (h->type == QW_MESSAGE) {
    /* connection window first, for every MESSAGE, also on closed streams (§9.3) */
    if ((int64_t)h->length > c->conn_recv_window) {
      conn_error(c, QW_FLOW_CONTROL_ERROR, "connection window overrun");
      return;
    }
    c->conn_recv_window -= h->length;
  }
  qw_stream *s = find_stream(c, h->stream_id);
  if (!s) { /* closed: dropped; MESSAGE bytes returned to the connection window */
    if (h->type == QW_MESSAGE) return_conn_credit(c, h->length);
    return;
  }
  switch (h->type) {
  case QW_HEADERS: on_headers(c, s, p, h->length); break;
  case QW_MESSAGE:
    /* connection credit is returned on receipt (§9.4), also when the stream fails */
    return_conn_credit(c, h->length);
    on_message(c, s, h, p);
    break;
  case QW_TRAILERS: on_trailers(c, s, p, h->length); break;
  case QW_RST: on_rst(c, s, qw_get_u32(p)); break;
  default: break;
  }
}

/* Handles the preface or one buffered frame. 1 = handled, 0 = need more bytes, -1 = dead */
static int process_one(qw_conn *c) {
  size_t avail = c->rbuf.len - c->rpos;
  if (!c->preface_read) {
    if (avail < QW_PREFACE_LEN) return 0;
    uint16_t v = 0;
    if (qw_decode_preface(c->rbuf.data + c->rpos, &v) < 0) {
      /* wrong magic: close, the attempt fails UNAVAILABLE (§2.3 step 4) */
      mark_dead(c, QW_UNAVAILABLE, "server sent an invalid preface");
      return -1;
    }
    c->peer_version = v;
    c->preface_read = 1;
    c->rpos += QW_PREFACE_LEN;
    return 1;
  }
  if (avail < QW_HEADER_LEN) return 0;
  qw_frame_header h;
  qw_decode_header(c->rbuf.data + c->rpos, &h);
  if (!c->header_checked) {
    const char *reason = NULL;
    int code = qw_check_header(&h, c->own.v[QW_S_MAX_FRAME_SIZE],
                               c->own.v[QW_S_MAX_HEADER_LIST_SIZE], &reason);
    if (code) {
      conn_error(c, (uint32_t)code, reason);
      return -1;
    }
    c->header_checked = 1;
  }
  if (avail < QW_HEADER_LEN + (size_t)h.length) {
    if (qw_buf_reserve(&c->rbuf, QW_HEADER_LEN + h.length - avail) < 0) {
      mark_dead(c, QW_UNAVAILABLE, "out of memory");
      return -1;
    }
    return 0;
  }
  const uint8_t *payload = c->rbuf.data + c->rpos + QW_HEADER_LEN;
  c->rpos += QW_HEADER_LEN + h.length;
  c->header_checked = 0;
  handle_frame(c, &h, payload);
  if (c->rpos == c->rbuf.len) c->rpos = c->rbuf.len = 0;
  return c->dead ? -1 : 1;
}

static void conn_lost(qw_conn *c, const char *what) {
  if (c->goaway_received && c->goaway_code != QW_NO_ERROR)
    mark_dead(c, QW_UNAVAILABLE, "connection closed after GOAWAY(%s): %s",
              qw_error_code_name(c->goaway_code), c->goaway_debug ? c->goaway_debug : "");
  else if (!c->got_settings)
    mark_dead(c, QW_UNAVAILABLE, "connection closed during the handshake (%s)", what);
  else
    mark_dead(c, QW_UNAVAILABLE, "connection lost: %s", what);
}

static int read_some(qw_conn *c) {
  if (c->rpos > 0) {
    memmove(c->rbuf.data, c->rbuf.data + c->rpos, c->rbuf.len - c->rpos);
    c->rbuf.len -= c->rpos;
    c->rpos = 0;
  }
  if (qw_buf_reserve(&c->rbuf, 65536) < 0) {
    mark_dead(c, QW_UNAVAILABLE, "out of memory");
    return -1;
  }
  ssize_t n = recv(c->fd, c->rbuf.data + c->rbuf.len, c->rbuf.cap - c->rbuf.len, 0);
  if (n > 0) {
    c->rbuf.len += (size_t)n;
    return 0;
  }
  if (n == 0) {
    conn_lost(c, "end of stream from the server");
    return -1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
  conn_lost(c, strerror(errno));
  return -1;
}

static int write_some(qw_conn *c) {
  while (c->wq_head) {
    struct qw_wframe *f = c->wq_head;
    ssize_t n = send(c->fd, f->data + f->off, f->len - f->off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
      conn_lost(c, strerror(errno));
      return -1;
    }
    f->off += (size_t)n;
    c->wq_bytes -= (size_t)n;
    if (f->off < f->len) return 0;
    c->wq_head = f->next;
    free(f);
  }
  return 0;
}

static void keepalive_tick(qw_conn *c, int64_t now) {
  if (c->cfg.keepalive_ms <= 0 || !c->handshake_done) return;
  if (c->ping_outstanding && c->keepalive_ping) {
    if (now - c->ping_sent_ns >= (int64_t)c->cfg.keepalive_timeout_ms * 1000000LL)
      mark_dead(c, QW_UNAVAILABLE, "keepalive timeout");
    return;
  }
  if (!c->ping_outstanding && now - c->last_recv_ns >= (int64_t)c->cfg.keepalive_ms * 1000000LL) {
    c->ping_counter++;
    qw_put_u32(c->ping_out, 0x6b61u); /* "ka" */
    qw_put_u32(c->ping_out + 4, (uint32_t)c->ping_counter);
    enqueue_frame(c, 1, QW_PING, 0, 0, c->ping_out, 8);
    c->ping_outstanding = 1;
    c->keepalive_ping = 1;
    c->ping_sent_ns = now;
  }
}

int qw_pump(qw_conn *c, int64_t deadline_ns) {
  if (c->dead) return -1;
  /* output first (non-blocking): what we queued goes out before we act on more input; any
   * progress returns, so that callers waiting for the queue to drain see it at once */
  if (c->wq_head) {
    size_t before = c->wq_bytes;
    if (write_some(c) < 0) return -1;
    if (c->wq_bytes != before) return 0;
  }
  int r = process_one(c);
  if (r != 0) return r < 0 ? -1 : 0;
  int64_t now = qw_now_ns();
  keepalive_tick(c, now);
  if (c->dead) return -1;
  int timeout_ms = -1;
  if (deadline_ns > 0) {
    int64_t left = deadline_ns - now;
    timeout_ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
  }
  if (c->cfg.keepalive_ms > 0 && c->handshake_done) {
    int64_t next = c->ping_outstanding && c->keepalive_ping
                       ? c->ping_sent_ns + (int64_t)c->cfg.keepalive_timeout_ms * 1000000LL
                       : c->last_recv_ns + (int64_t)c->cfg.keepalive_ms * 1000000LL;
    int ka = next <= now ? 0 : (int)((next - now + 999999) / 1000000);
    if (timeout_ms < 0 || ka < timeout_ms) timeout_ms = ka;
  }
  struct pollfd pfd = {c->fd, POLLIN, 0};
  if (c->wq_head) pfd.events |= POLLOUT;
  int n = poll(&pfd, 1, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return 0;
    mark_dead(c, QW_UNAVAILABLE, "poll: %s", strerror(errno));
    return -1;
  }
  if (n == 0) return 0;
  if (pfd.revents & POLLOUT) {
    if (write_some(c) < 0) return -1;
  }
  if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
    if (read_some(c) < 0) return -1;
  }
  return 0;
}

int qw_flush(qw_conn *c, int64_t deadline_ns) {
  while (!c->dead && c->wq_head) {
    if (deadline_ns > 0 && qw_now_ns() >= deadline_ns) return -1;
    if (qw_pump(c, deadline_ns) < 0) return -1;
  }
  return c->dead ? -1 : 0;
}

/* ---- connection setup ---------------------------------------------------------------------- */

void qw_config_default(qw_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->version = 1;
  cfg->stream_window = 262144;
  cfg->conn_window = 4194304;
  cfg->max_message_size = 4194304;
  cfg->accept_encodings = 7;
  cfg->connect_timeout_ms = 10000;
  cfg->keepalive_ms = 30000;
  cfg->keepalive_timeout_ms = 10000;
}

qw_conn *qw_connect_fd(int fd, const qw_config *cfg, qw_status *st) {
  memset(st, 0, sizeof *st);
  qw_conn *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    status_set(st, QW_UNAVAILABLE, "client", "out of memory");
    return NULL;
  }
  c->fd = fd;
  c->cfg = *cfg;
  c->trace = getenv("QW_TRACE") != NULL && getenv("QW_TRACE")[0] == '1';
  qw_settings_default(&c->own);
  qw_settings_default(&c->peer);
  c->own.v[QW_S_INITIAL_STREAM_WINDOW] = cfg->stream_window;
  c->own.v[QW_S_INITIAL_CONNECTION_WINDOW] = cfg->conn_window;
  c->own.v[QW_S_MAX_MESSAGE_SIZE] = cfg->max_message_size;
  c->own.v[QW_S_ACCEPT_ENCODINGS] = cfg->accept_encodings;
  c->conn_recv_window = cfg->conn_window;
  int fl = fcntl(fd, F_GETFL, 0);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on socketpairs: fine */

  /* preface + SETTINGS, without waiting for anything (§2.3 step 1) */
  uint8_t out[QW_PREFACE_LEN + QW_HEADER_LEN + 4 * 6];
  qw_encode_preface(out, cfg->version);
  uint16_t ids[4];
  uint32_t vals[4];
  size_t n = 0;
  if (cfg->stream_window != 262144) {
    ids[n] = QW_S_INITIAL_STREAM_WINDOW;
    vals[n++] = cfg->stream_window;
  }
  if (cfg->conn_window != 4194304) {
    ids[n] = QW_S_INITIAL_CONNECTION_WINDOW;
    vals[n++] = cfg->conn_window;
  }
  ids[n] = QW_S_MAX_MESSAGE_SIZE;
  vals[n++] = cfg->max_message_size;
  ids[n] = QW_S_ACCEPT_ENCODINGS;
  vals[n++] = cfg->accept_encodings;
  size_t flen = qw_settings_frame(out + QW_PREFACE_LEN, ids, vals, n);
  enqueue_raw(c, 0, out, QW_PREFACE_LEN + flen);
  c->frames_sent[QW_SETTINGS]++;
  if (c->trace) fprintf(stderr, "[qwire] -> preface v%u + SETTINGS (%zu entries)\n", cfg->version, n);

  int64_t deadline = qw_now_ns() + HANDSHAKE_TIMEOUT_NS;
  while (!c->dead && !c->got_settings) {
    if (qw_now_ns() >= deadline) {
      if (c->preface_read) conn_error(c, QW_SETTINGS_TIMEOUT, "no SETTINGS within 10 s");
      mark_dead(c, QW_UNAVAILABLE, "handshake timeout: no preface + SETTINGS within 10 s");
      break;
    }
    qw_pump(c, deadline);
  }
  if (c->dead) {
    status_set(st, c->dead_code, "connection", "%s", c->dead_msg);
    qw_close(c);
    return NULL;
  }
  c->handshake_done = 1;
  c->last_recv_ns = qw_now_ns();
  return c;
}

qw_conn *qw_connect(const char *hostport, const qw_config *cfg, qw_status *st) {
  memset(st, 0, sizeof *st);
  char host[256];
  const char *colon = strrchr(hostport, ':');
  if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof host) {
    status_set(st, QW_UNAVAILABLE, "client", "bad address '%s' (want HOST:PORT)", hostport);
    return NULL;
  }
  memcpy(host, hostport, (size_t)(colon - hostport));
  host[colon - hostport] = 0;
  char *h = host;
  if (h[0] == '[' && h[strlen(h) - 1] == ']') {
    h[strlen(h) - 1] = 0;
    h++;
  }
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(h, colon + 1, &hints, &res);
  if (rc != 0) {
    status_set(st, QW_UNAVAILABLE, "client", "could not resolve %s: %s", hostport,
               gai_strerror(rc));
    return NULL;
  }
  int fd = -1;
  char err[200] = "no address";
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int fl = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    if (errno == EINPROGRESS) {
      struct pollfd pfd = {fd, POLLOUT, 0};
      int n = poll(&pfd, 1, cfg->connect_timeout_ms);
      int soerr = 0;
      socklen_t sl = sizeof soerr;
      if (n == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) break;
      snprintf(err, sizeof err, "%s", n == 0 ? "connect timeout" : strerror(soerr ? soerr : errno));
    } else {
      snprintf(err, sizeof err, "%s", strerror(errno));
    }
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    status_set(st, QW_UNAVAILABLE, "client", "could not connect to %s: %s", hostport, err);
    return NULL;
  }
  return qw_connect_fd(fd, cfg, st);
}

void qw_close(qw_conn *c) {
  if (!c) return;
  if (!c->dead) {
    while (c->streams) {
      qw_stream *s = c->streams;
      send_rst(c, s->id, QW_CANCEL);
      finish(s, QW_CANCELLED, "client", 0, "connection closed by the client");
    }
    /* everything queued goes first: the GOAWAY must not overtake a stream's frames */
    qw_flush(c, qw_now_ns() + GOAWAY_FLUSH_NS);
    /* §11.4: GOAWAY(0, NO_ERROR) on an idle connection; never in answer to a GOAWAY (§11.3) */
    if (!c->dead && c->handshake_done && !c->goaway_received && !c->goaway_sent) {
      send_goaway(c, QW_NO_ERROR, "");
      qw_flush(c, qw_now_ns() + GOAWAY_FLUSH_NS);
    }
    if (c->fd >= 0) {
      /* let the server see our FIN and read what it still sends, so that our close does not
       * turn into a TCP reset that could destroy the GOAWAY in flight */
      shutdown(c->fd, SHUT_WR);
      int64_t until = qw_now_ns() + 500000000LL;
      char sink[4096];
      for (;;) {
        int64_t left = until - qw_now_ns();
        if (left <= 0) break;
        struct pollfd pfd = {c->fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)(left / 1000000) + 1) <= 0) break;
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) break;
      }
    }
    mark_dead(c, QW_UNAVAILABLE, "connection closed by the client");
  }
  close_fd(c);
  qw_buf_free(&c->rbuf);
  struct qw_wframe *f = c->wq_head;
  while (f) {
    struct qw_wframe *n = f->next;
    free(f);
    f = n;
  }
  free(c->goaway_debug);
  free(c);
}

int qw_ping(qw_conn *c, int timeout_ms, int64_t *rtt_us) {
  if (c->dead) return -1;
  int64_t start = qw_now_ns();
  int64_t deadline = start + (int64_t)timeout_ms * 1000000LL;
  /* wait for an outstanding keepalive ping first (one at a time) */
  while (c->ping_outstanding && !c->dead && qw_now_ns() < deadline) qw_pump(c, deadline);
  if (c->dead || c->ping_outstanding) return -1;
  c->ping_counter++;
  memcpy(c->ping_out, "qwp", 3);
  c->ping_out[3] = 0;
  qw_put_u32(c->ping_out + 4, (uint32_t)c->ping_counter);
  enqueue_frame(c, 1, QW_PING, 0, 0, c->ping_out, 8);
  c->ping_outstanding = 1;
  c->keepalive_ping = 0;
  c->ping_sent_ns = qw_now_ns();
  while (c->ping_outstanding && !c->dead) {
    if (qw_now_ns() >= deadline) return -1;
    qw_pump(c, deadline);
  }
  if (c->dead) return -1;
  if (rtt_us) *rtt_us = (qw_now_ns() - start) / 1000;
  return 0;
}

/* ---- calls ------------------------------------------------------------------------------- */

static void on_deadline(qw_stream *s) {
  qw_conn *c = s->conn;
  s->deadline_passed = 1;
  if (s->done) return;
  uint32_t sid = s->id;
  finish(s, QW_DEADLINE_EXCEEDED, "client", 0, "deadline exceeded (client timer)");
  if (c && !c->dead && sid) send_rst(c, sid, QW_CANCEL);
}

static int timer_passed(qw_stream *s) {
  return s->deadline_ns > 0 && qw_now_ns() >= s->deadline_ns + s->timer_grace_ns;
}

static int64_t timer_at(qw_stream *s) {
  return s->deadline_ns > 0 ? s->deadline_ns + s->timer_grace_ns : 0;
}

qw_stream *qw_stream_open(qw_conn *c, const char *method, uint64_t timeout_us, const qw_md *md,
                          size_t n_md, int encoding, int end_stream) {
  qw_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->conn = c;
  int64_t start = qw_now_ns();
  int64_t deadline = timeout_us ? start + (int64_t)timeout_us * 1000 : 0;
  if (c->dead) {
    finish(s, c->dead_code, "connection", 0, "%s", c->dead_msg);
    return s;
  }
  if (c->goaway_received || c->goaway_sent) {
    finish(s, QW_UNAVAILABLE, "goaway",
           0, "connection is going away (GOAWAY); not processed, safe to retry");
    return s;
  }
  if (!qw_utf8_valid((const uint8_t *)method, strlen(method))) {
    finish(s, QW_INTERNAL, "client", 0, "method is not valid UTF-8");
    return s;
  }
  char msg[300];
  for (size_t i = 0; i < n_md; i++) {
    if (qw_md_check(md[i].key, md[i].binary, md[i].value, md[i].len, QW_MD_REQUEST, msg,
                    sizeof msg) < 0) {
      finish(s, QW_INTERNAL, "client", 0, "%s", msg);
      return s;
    }
  }
  if (encoding < 0 || encoding > 2 || !(c->peer.v[QW_S_ACCEPT_ENCODINGS] & (1u << encoding)))
    encoding = QW_ENC_IDENTITY; /* the server cannot decode it: send identity (§7.3) */
  /* a free slot under the server's MAX_CONCURRENT_STREAMS (§8.4) */
  int waited = 0;
  while (!c->dead && c->n_open >= c->peer.v[QW_S_MAX_CONCURRENT_STREAMS]) {
    waited = 1;
    if (deadline && qw_now_ns() >= deadline) {
      finish(s, QW_DEADLINE_EXCEEDED, "client", 0, "deadline exceeded waiting for a stream slot");
      return s;
    }
    qw_pump(c, deadline);
  }
  if (c->dead) {
    finish(s, c->dead_code, "connection", 0, "%s", c->dead_msg);
    return s;
  }
  uint64_t send_timeout = timeout_us;
  if (deadline && waited) { /* remaining time, rounded up (§5.3) */
    int64_t left = deadline - qw_now_ns();
    if (left <= 0) {
      finish(s, QW_DEADLINE_EXCEEDED, "client", 0, "deadline exceeded before the call started");
      return s;
    }
    send_timeout = (uint64_t)((left + 999) / 1000);
  }
  uint32_t id = c->highest_id == 0 ? 1 : c->highest_id + 2;
  if (c->highest_id >= QW_MAX_STREAM_ID) {
    finish(s, QW_UNAVAILABLE, "client", 0, "stream ids exhausted on this connection");
    return s;
  }
  /* RequestHeaders (§5.1) */
  Wire__V1__RequestHeaders rh = WIRE__V1__REQUEST_HEADERS__INIT;
  rh.method = (char *)method;
  rh.timeout_us = send_timeout;
  rh.message_encoding = encoding == QW_ENC_IDENTITY ? "" : (char *)qw_encoding_name(encoding);
  Wire__V1__MetadataEntry *ents = n_md ? calloc(n_md, sizeof *ents) : NULL;
  Wire__V1__MetadataEntry **eps = n_md ? calloc(n_md, sizeof *eps) : NULL;
  if (n_md && (!ents || !eps)) {
    free(ents);
    free(eps);
    finish(s, QW_INTERNAL, "client", 0, "out of memory");
    return s;
  }
  for (size_t i = 0; i < n_md; i++) {
    Wire__V1__MetadataEntry e = WIRE__V1__METADATA_ENTRY__INIT;
    e.key = md[i].key;
    if (md[i].binary) {
      e.value_case = WIRE__V1__METADATA_ENTRY__VALUE_BINARY;
      e.binary.data = md[i].value;
      e.binary.len = md[i].len;
    } else {
      e.value_case = WIRE__V1__METADATA_ENTRY__VALUE_TEXT;
      e.text = (char *)md[i].value;
    }
    ents[i] = e;
    eps[i] = &ents[i];
  }
  rh.n_metadata = n_md;
  rh.metadata = eps;
  size_t plen = wire__v1__request_headers__get_packed_size(&rh);
  uint8_t *payload = malloc(plen ? plen : 1);
  if (!payload) {
    free(ents);
    free(eps);
    finish(s, QW_INTERNAL, "client", 0, "out of memory");
    return s;
  }
  wire__v1__request_headers__pack(&rh, payload);
  free(ents);
  free(eps);
  if (plen > c->peer.v[QW_S_MAX_HEADER_LIST_SIZE]) {
    finish(s, QW_RESOURCE_EXHAUSTED, "client", 0,
           "request headers of %zu bytes exceed the peer's limit of %u bytes "
           "(MAX_HEADER_LIST_SIZE)",
           plen, c->peer.v[QW_S_MAX_HEADER_LIST_SIZE]);
    free(payload);
    return s;
  }
  s->id = id;
  c->highest_id = id; /* the id is assigned when HEADERS is queued, in order (§8.1) */
  s->state = end_stream ? QW_SS_HALF_CLOSED_LOCAL : QW_SS_OPEN;
  s->send_window = c->peer.v[QW_S_INITIAL_STREAM_WINDOW];
  s->recv_window = c->own.v[QW_S_INITIAL_STREAM_WINDOW];
  s->req_encoding = encoding;
  s->deadline_ns = send_timeout ? qw_now_ns() + (int64_t)send_timeout * 1000 : 0;
  s->in_table = 1;
  s->next = c->streams;
  c->streams = s;
  c->n_open++;
  enqueue_frame(c, 0, QW_HEADERS, end_stream ? QW_F_END_STREAM : 0, id, payload, plen);
  s->frames_sent++;
  free(payload);
  return s;
}

/* waits until the write queue holds nothing of this stream's (keeps reading meanwhile) */
static int drain_writes(qw_stream *s) {
  qw_conn *c = s->conn;
  while (!s->done && !c->dead && c->wq_head) {
    if (timer_passed(s)) {
      on_deadline(s);
      break;
    }
    qw_pump(c, timer_at(s));
  }
  return s->done ? -1 : 0;
}

int qw_stream_send(qw_stream *s, const uint8_t *msg, size_t len, int end_stream) {
  if (s->done) return -1;
  qw_conn *c = s->conn;
  if (s->state != QW_SS_OPEN) return -1; /* request stream already ended */
  uint32_t peer_max = c->peer.v[QW_S_MAX_MESSAGE_SIZE];
  if (len > peer_max) {
    uint32_t sid = s->id;
    finish(s, QW_RESOURCE_EXHAUSTED, "client", 0,
           "message of %zu bytes exceeds the peer's limit of %u bytes (MAX_MESSAGE_SIZE)", len,
           peer_max);
    send_rst(c, sid, QW_CANCEL);
    return -1;
  }
  const uint8_t *data = msg;
  size_t dlen = len;
  uint8_t *comp = NULL;
  int compressed = 0;
  if (s->req_encoding != QW_ENC_IDENTITY && len > 0) {
    size_t clen = 0;
    if (qw_compress(s->req_encoding, msg, len, &comp, &clen) == 0 && clen < len &&
        clen <= peer_max) {
      data = comp;
      dlen = clen;
      compressed = 1;
    }
  }
  size_t off = 0;
  do {
    size_t avail = 0;
    size_t remaining = dlen - off;
    while (!s->done && !c->dead) {
      if (timer_passed(s)) {
        on_deadline(s);
        break;
      }
      avail = remaining;
      if (avail > c->peer.v[QW_S_MAX_FRAME_SIZE]) avail = c->peer.v[QW_S_MAX_FRAME_SIZE];
      if (s->send_window < (int64_t)avail) avail = s->send_window > 0 ? (size_t)s->send_window : 0;
      if (c->conn_send_window < (int64_t)avail)
        avail = c->conn_send_window > 0 ? (size_t)c->conn_send_window : 0;
      if (remaining == 0 || avail > 0) break;
      qw_pump(c, timer_at(s)); /* no credit: keep reading until a WINDOW_UPDATE arrives */
    }
    if (s->done || c->dead) {
      free(comp);
      return -1;
    }
    int last = off + avail == dlen;
    uint8_t flags = (compressed ? QW_F_COMPRESSED : 0) | (last ? 0 : QW_F_MORE) |
                    (last && end_stream ? QW_F_END_STREAM : 0);
    enqueue_frame(c, 0, QW_MESSAGE, flags, s->id, data + off, avail);
    s->frames_sent++;
    if (!last) s->frames_sent_more++;
    s->send_window -= (int64_t)avail;
    c->conn_send_window -= (int64_t)avail;
    off += avail;
    if (last && end_stream) s->state = QW_SS_HALF_CLOSED_LOCAL;
    if (drain_writes(s) < 0) {
      free(comp);
      return -1;
    }
  } while (off < dlen);
  free(comp);
  return 0;
}

int qw_stream_half_close(qw_stream *s) {
  if (s->done) return -1;
  if (s->state != QW_SS_OPEN) return 0;
  enqueue_frame(s->conn, 0, QW_MESSAGE, QW_F_NO_MESSAGE | QW_F_END_STREAM, s->id, NULL, 0);
  s->frames_sent++;
  s->state = QW_SS_HALF_CLOSED_LOCAL;
  return 0;
}

int qw_stream_recv(qw_stream *s, qw_msg **out) {
  *out = NULL;
  for (;;) {
    if (s->q_head) {
      qw_msg *m = s->q_head;
      s->q_head = m->next;
      if (!s->q_head) s->q_tail = NULL;
      s->q_count--;
      m->next = NULL;
      /* consumed: its stream credit becomes returnable (§9.4) */
      return_stream_credit(s, m->credit);
      if (s->q_count == 0 && s->frag_credit_held) {
        uint64_t held = s->frag_credit_held;
        s->frag_credit_held = 0;
        return_stream_credit(s, held);
      }
      *out = m;
      return 1;
    }
    if (s->done) return 0;
    if (timer_passed(s)) {
      on_deadline(s);
      continue;
    }
    qw_pump(s->conn, timer_at(s));
  }
}

int qw_stream_wait_headers(qw_stream *s) {
  while (!s->got_headers && !s->done) {
    if (timer_passed(s)) {
      on_deadline(s);
      break;
    }
    qw_pump(s->conn, timer_at(s));
  }
  return s->got_headers;
}

void qw_stream_cancel(qw_stream *s) {
  if (s->done) return;
  qw_conn *c = s->conn;
  uint32_t sid = s->id;
  finish(s, QW_CANCELLED, "client", 0, "cancelled by the client");
  if (c && !c->dead && sid) send_rst(c, sid, QW_CANCEL);
}

void qw_msg_free(qw_msg *m) {
  if (!m) return;
  free(m->data);
  free(m);
}

void qw_stream_free(qw_stream *s) {
  if (!s) return;
  if (!s->done) qw_stream_cancel(s);
  free_queue(s);
  qw_buf_free(&s->frag);
  md_free(s->headers_md, s->n_headers_md);
  md_free(s->trailers_md, s->n_trailers_md);
  qw_status_clear(&s->status);
  free(s);
}
