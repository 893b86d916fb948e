/*
 * qwvectors DIR: checks the C client's codec against the byte-exact vectors of
 * Tests/FramedWireTests/Vectors (docs/protocol.md §19).
 *
 * - preface / frame / sequence vectors: decode, compare every field of "expect", re-encode from
 *   the decoded fields and compare the bytes exactly (compressed messages: the decompressed
 *   content is compared, and our own compressor must round-trip it);
 * - invalid vectors: a receiver in the state the vector's "context" describes (built on the
 *   library's header checks, §3.3 steps 1-6 and 8) must give exactly the expected answer;
 * - replays: the qwire client itself talks to a scripted server over a socketpair, and what it
 *   writes must be byte-identical to the client vectors (unary_call_client,
 *   unary_then_server_stream_client, message_split_70000), it must fail the handshake on
 *   version_rejection_server, answer a bad server frame with GOAWAY(PROTOCOL_ERROR), and read
 *   statuses and trailing metadata from the TRAILERS vectors.
 *
 * Prints "ok NAME" / "FAIL NAME: reason" per check and "N passed, M failed" last; exit 0 iff
 * nothing failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/v1/echo.pb-c.h"
#include "minijson.h"
#include "qwire.h"
#include "sha256.h"
#include "wire/v1/frames.pb-c.h"

static const char *g_dir;
static const jval *g_vectors;
static int g_passed, g_failed;
static char g_err[1024];

#define FAILF(...)                                        \
  do {                                                    \
    snprintf(g_err, sizeof g_err, __VA_ARGS__);           \
    return -1;                                            \
  } while (0)

/* ---- helpers ---------------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  qw_buf b = {0};
  char tmp[65536];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) qw_buf_append(&b, tmp, n);
  fclose(f);
  qw_buf_append(&b, "", 1);
  *len = b.len - 1;
  return (char *)b.data;
}

static int hexv(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* .hex file: hex pairs, whitespace ignored, lines starting with '#' are comments */
static int load_hex(const char *file, qw_buf *out) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", g_dir, file);
  size_t len;
  char *text = read_file(path, &len);
  if (!text) FAILF("cannot read %.900s: %s", path, strerror(errno));
  out->len = 0;
  const char *p = text;
  int rc = 0;
  while (*p) {
    const char *eol = strchr(p, '\n');
    if (!eol) eol = p + strlen(p);
    const char *q = p;
    while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
    if (q < eol && *q != '#') {
      int hi = -1;
      for (; q < eol; q++) {
        if (*q == ' ' || *q == '\t' || *q == '\r') continue;
        int v = hexv(*q);
        if (v < 0) {
          rc = -1;
          snprintf(g_err, sizeof g_err, "bad hex character in %s", file);
          break;
        }
        if (hi < 0)
          hi = v;
        else {
          uint8_t byte = (uint8_t)(hi * 16 + v);
          qw_buf_append(out, &byte, 1);
          hi = -1;
        }
      }
      if (hi >= 0 && rc == 0) {
        rc = -1;
        snprintf(g_err, sizeof g_err, "odd number of hex digits in %s", file);
      }
    }
    p = *eol ? eol + 1 : eol;
  }
  free(text);
  return rc;
}

static char *hex_encode(const uint8_t *p, size_t n) {
  char *s = malloc(2 * n + 1);
  for (size_t i = 0; i < n; i++) sprintf(s + 2 * i, "%02x", p[i]);
  s[2 * n] = 0;
  return s;
}

static int bytes_eq_hex(const uint8_t *p, size_t n, const char *hex) {
  char *h = hex_encode(p, n);
  int eq = strcmp(h, hex) == 0;
  free(h);
  return eq;
}

static int jnum(const jval *obj, const char *key, double *out) {
  const jval *v = json_get(obj, key);
  if (!v || v->type != J_NUM) return -1;
  *out = v->num;
  return 0;
}

static int expect_num(const jval *obj, const char *key, double got) {
  double want;
  if (jnum(obj, key, &want) < 0) FAILF("expect.%s missing", key);
  if (want != got) FAILF("%s: got %.0f, want %.0f", key, got, want);
  return 0;
}

static int expect_str(const jval *obj, const char *key, const char *got) {
  const char *want = json_str(json_get(obj, key));
  if (!want) FAILF("expect.%s missing", key);
  if (strcmp(want, got)) FAILF("%s: got \"%s\", want \"%s\"", key, got, want);
  return 0;
}

static int expect_hex(const jval *obj, const char *key, const uint8_t *p, size_t n) {
  const char *want = json_str(json_get(obj, key));
  if (!want) FAILF("expect.%s missing", key);
  if (!bytes_eq_hex(p, n, want)) {
    char *h = hex_encode(p, n > 64 ? 64 : n);
    snprintf(g_err, sizeof g_err, "%s: got %s%s, want %.130s", key, h, n > 64 ? "..." : "", want);
    free(h);
    return -1;
  }
  return 0;
}

static const jval *find_vector(const char *name) {
  for (size_t i = 0; i < g_vectors->n; i++)
    if (!strcmp(json_str(json_get(g_vectors->items[i], "name")), name)) return g_vectors->items[i];
  return NULL;
}

static int load_vector_bytes(const char *name, qw_buf *out) {
  const jval *v = find_vector(name);
  if (!v) FAILF("no vector %s", name);
  return load_hex(json_str(json_get(v, "file")), out);
}

static void report(const char *name, int rc) {
  if (rc == 0) {
    g_passed++;
    printf("ok %s\n", name);
  } else {
    g_failed++;
    printf("FAIL %s: %s\n", name, g_err);
  }
  fflush(stdout);
}

/* ---- frame payload decoding / re-encoding -------------------------------------------------- */

static int md_matches(Wire__V1__MetadataEntry **md, size_t n, const jval *exp, int place) {
  if (!exp || exp->type != J_ARR) FAILF("expected metadata list missing");
  if (exp->n != n) FAILF("metadata: got %zu entries, want %zu", n, exp->n);
  for (size_t i = 0; i < n; i++) {
    const jval *e = exp->items[i];
    if (e->type != J_ARR || e->n != 3) FAILF("bad metadata expectation");
    const char *key = json_str(e->items[0]), *kind = json_str(e->items[1]),
               *val = json_str(e->items[2]);
    if (strcmp(md[i]->key, key)) FAILF("metadata[%zu].key: got %s, want %s", i, md[i]->key, key);
    char msg[300];
    if (!strcmp(kind, "text")) {
      if (md[i]->value_case != WIRE__V1__METADATA_ENTRY__VALUE_TEXT || strcmp(md[i]->text, val))
        FAILF("metadata[%zu] (%s): text value mismatch", i, key);
      if (qw_md_check(key, 0, (const uint8_t *)md[i]->text, strlen(md[i]->text), place, msg,
                      sizeof msg) < 0)
        FAILF("metadata[%zu]: %s", i, msg);
    } else {
      if (md[i]->value_case != WIRE__V1__METADATA_ENTRY__VALUE_BINARY ||
          !bytes_eq_hex(md[i]->binary.data, md[i]->binary.len, val))
        FAILF("metadata[%zu] (%s): binary value mismatch", i, key);
      if (qw_md_check(key, 1, md[i]->binary.data, md[i]->binary.len, place, msg, sizeof msg) < 0)
        FAILF("metadata[%zu]: %s", i, msg);
    }
  }
  return 0;
}

/* Decodes one frame payload per the expectation, compares, and writes the payload re-encoded
 * from the decoded fields into *re. */
static int check_payload(const qw_frame_header *h, const uint8_t *p, const jval *exp,
                         const char *direction, qw_buf *re) {
  re->len = 0;
  int from_client = !strcmp(direction, "client_to_server");
  int from_server = !strcmp(direction, "server_to_client");
  if (qw_is_extension(h->type)) {
    const jval *ig = json_get(exp, "ignored");
    if (!ig || ig->type != J_BOOL || !ig->b) FAILF("extension frame not marked ignored");
    qw_buf_append(re, p, h->length);
    return 0;
  }
  switch (h->type) {
  case QW_SETTINGS: {
    const jval *list = json_get(exp, "settings");
    if (!list || list->type != J_ARR) FAILF("expect.settings missing");
    size_t n = h->length / 6;
    if (list->n != n) FAILF("settings: got %zu entries, want %zu", n, list->n);
    uint16_t ids[32];
    uint32_t vals[32];
    for (size_t i = 0; i < n; i++) {
      ids[i] = qw_get_u16(p + 6 * i);
      vals[i] = qw_get_u32(p + 6 * i + 2);
      const jval *e = list->items[i];
      if (e->type != J_ARR || e->n != 2 || e->items[0]->num != ids[i] || e->items[1]->num != vals[i])
        FAILF("settings[%zu]: got [%u, %u]", i, ids[i], vals[i]);
    }
    qw_settings s;
    qw_settings_default(&s);
    const char *why;
    if (qw_settings_apply(&s, p, h->length, &why)) FAILF("valid SETTINGS rejected: %s", why);
    uint8_t buf[QW_HEADER_LEN + 192];
    size_t fl = qw_settings_frame(buf, ids, vals, n);
    qw_buf_append(re, buf + QW_HEADER_LEN, fl - QW_HEADER_LEN);
    return 0;
  }
  case QW_HEADERS:
    if (from_client) {
      const jval *e = json_get(exp, "request_headers");
      if (!e) FAILF("expect.request_headers missing");
      Wire__V1__RequestHeaders *rh = wire__v1__request_headers__unpack(NULL, h->length, p);
      if (!rh) FAILF("RequestHeaders undecodable");
      int rc = 0;
      if (expect_str(e, "method", rh->method) < 0 || expect_num(e, "timeout_us", (double)rh->timeout_us) < 0 ||
          expect_str(e, "message_encoding", rh->message_encoding) < 0 ||
          md_matches(rh->metadata, rh->n_metadata, json_get(e, "metadata"), QW_MD_REQUEST) < 0)
        rc = -1;
      if (rc == 0) {
        qw_buf_reserve(re, wire__v1__request_headers__get_packed_size(rh));
        re->len = wire__v1__request_headers__pack(rh, re->data);
      }
      wire__v1__request_headers__free_unpacked(rh, NULL);
      return rc;
    } else if (from_server) {
      const jval *e = json_get(exp, "response_headers");
      if (!e) FAILF("expect.response_headers missing");
      Wire__V1__ResponseHeaders *rh = wire__v1__response_headers__unpack(NULL, h->length, p);
      if (!rh) FAILF("ResponseHeaders undecodable");
      int rc = 0;
      if (expect_str(e, "message_encoding", rh->message_encoding) < 0 ||
          md_matches(rh->metadata, rh->n_metadata, json_get(e, "metadata"), QW_MD_RESPONSE_HEADERS) < 0)
        rc = -1;
      if (rc == 0) {
        qw_buf_reserve(re, wire__v1__response_headers__get_packed_size(rh) + 1);
        re->len = wire__v1__response_headers__pack(rh, re->data);
      }
      wire__v1__response_headers__free_unpacked(rh, NULL);
      return rc;
    }
    FAILF("HEADERS needs a direction");
  case QW_TRAILERS: {
    Wire__V1__Trailers *t = wire__v1__trailers__unpack(NULL, h->length, p);
    if (!t) FAILF("Trailers undecodable");
    int rc = 0;
    if (expect_num(exp, "code", t->code) < 0 || expect_str(exp, "message", t->message) < 0 ||
        expect_hex(exp, "status_details_hex", t->status_details.data, t->status_details.len) < 0 ||
        md_matches(t->metadata, t->n_metadata, json_get(exp, "metadata"), QW_MD_TRAILERS) < 0)
      rc = -1;
    if (rc == 0) {
      qw_buf_reserve(re, wire__v1__trailers__get_packed_size(t) + 1);
      re->len = wire__v1__trailers__pack(t, re->data);
    }
    wire__v1__trailers__free_unpacked(t, NULL);
    return rc;
  }
  case QW_RST:
  case QW_WINDOW_UPDATE: {
    uint32_t v = qw_get_u32(p);
    if (expect_num(exp, h->type == QW_RST ? "error_code" : "increment", v) < 0) return -1;
    uint8_t b[4];
    qw_put_u32(b, v);
    qw_buf_append(re, b, 4);
    return 0;
  }
  case QW_PING: {
    if (expect_hex(exp, "opaque_hex", p, 8) < 0) return -1;
    const jval *ack = json_get(exp, "ack");
    if (!ack || ack->type != J_BOOL || ack->b != ((h->flags & QW_F_ACK) != 0)) FAILF("ack mismatch");
    qw_buf_append(re, p, 8);
    return 0;
  }
  case QW_GOAWAY: {
    uint32_t last = qw_get_u32(p) & 0x7fffffffu, code = qw_get_u32(p + 4);
    char *debug = strndup((const char *)p + 8, h->length - 8);
    int rc = 0;
    if (expect_num(exp, "last_stream_id", last) < 0 || expect_num(exp, "error_code", code) < 0 ||
        expect_str(exp, "debug", debug) < 0)
      rc = -1;
    uint8_t b[8];
    qw_put_u32(b, last);
    qw_put_u32(b + 4, code);
    qw_buf_append(re, b, 8);
    qw_buf_append(re, debug, strlen(debug));
    free(debug);
    return rc;
  }
  case QW_MESSAGE: {
    const jval *nm = json_get(exp, "no_message");
    if (nm && nm->type == J_BOOL && nm->b) {
      if (h->flags != (QW_F_NO_MESSAGE | QW_F_END_STREAM) || h->length != 0)
        FAILF("NO_MESSAGE frame must be flags 0x09, length 0");
      return 0;
    }
    const jval *echo = json_get(exp, "echo");
    if (!echo) FAILF("expect.echo missing");
    const uint8_t *data = p;
    size_t dlen = h->length;
    uint8_t *inflated = NULL;
    const char *encname = json_str(json_get(exp, "encoding"));
    if (h->flags & QW_F_COMPRESSED) {
      if (!encname) FAILF("compressed frame without expect.encoding");
      int enc = qw_encoding_from_name(encname);
      char msg[300];
      if (qw_decompress(enc, p, h->length, 4194304, &inflated, &dlen, msg, sizeof msg) < 0)
        FAILF("decompress: %s", msg);
      data = inflated;
      if (expect_hex(exp, "decompressed_hex", data, dlen) < 0) {
        free(inflated);
        return -1;
      }
      /* our compressor must produce something that inflates back to the same content */
      uint8_t *c2 = NULL, *back = NULL;
      size_t c2len = 0, backlen = 0;
      if (qw_compress(enc, data, dlen, &c2, &c2len) < 0 ||
          qw_decompress(enc, c2, c2len, 4194304, &back, &backlen, msg, sizeof msg) < 0 ||
          backlen != dlen || memcmp(back, data, dlen)) {
        free(c2);
        free(back);
        free(inflated);
        FAILF("%s round trip through our compressor failed", encname);
      }
      free(c2);
      free(back);
    }
    const char *mt = json_str(json_get(echo, "message_type"));
    int rc = 0;
    qw_buf packed = {0};
    if (mt && !strcmp(mt, "bench.v1.EchoRequest")) {
      Bench__V1__EchoRequest *r = bench__v1__echo_request__unpack(NULL, dlen, data);
      if (!r) {
        rc = -1;
        snprintf(g_err, sizeof g_err, "EchoRequest undecodable");
      } else {
        if (expect_hex(echo, "payload_hex", r->payload.data, r->payload.len) < 0 ||
            expect_num(echo, "count", r->count) < 0)
          rc = -1;
        qw_buf_reserve(&packed, bench__v1__echo_request__get_packed_size(r) + 1);
        packed.len = bench__v1__echo_request__pack(r, packed.data);
        bench__v1__echo_request__free_unpacked(r, NULL);
      }
    } else if (mt && !strcmp(mt, "bench.v1.EchoResponse")) {
      Bench__V1__EchoResponse *r = bench__v1__echo_response__unpack(NULL, dlen, data);
      if (!r) {
        rc = -1;
        snprintf(g_err, sizeof g_err, "EchoResponse undecodable");
      } else {
        if (expect_hex(echo, "payload_hex", r->payload.data, r->payload.len) < 0 ||
            expect_num(echo, "index", r->index) < 0)
          rc = -1;
        qw_buf_reserve(&packed, bench__v1__echo_response__get_packed_size(r) + 1);
        packed.len = bench__v1__echo_response__pack(r, packed.data);
        bench__v1__echo_response__free_unpacked(r, NULL);
      }
    } else {
      rc = -1;
      snprintf(g_err, sizeof g_err, "unknown echo.message_type");
    }
    if (rc == 0 && (packed.len != dlen || (dlen && memcmp(packed.data, data, dlen)))) {
      rc = -1;
      snprintf(g_err, sizeof g_err, "re-encoded message differs from the (decompressed) payload");
    }
    qw_buf_free(&packed);
    free(inflated);
    /* the frame is re-encoded with the original wire payload; its content was compared above */
    if (rc == 0) qw_buf_append(re, p, h->length);
    return rc;
  }
  default: FAILF("unexpected frame type 0x%02x", h->type);
  }
}

/* Header checks as the receiver for this direction must accept a valid frame. */
static int header_valid_for(const qw_frame_header *h, const char *direction) {
  const char *why = NULL;
  int as_server = strcmp(direction, "server_to_client") != 0; /* client_to_server or either */
  int as_client = strcmp(direction, "client_to_server") != 0;
  for (int role = 0; role < 2; role++) {
    if (role == 0 && !as_server) continue;
    if (role == 1 && !as_client) continue;
    int rc = qw_check_header(h, 65536, 16384, &why);
    if (!rc) rc = qw_check_direction(h, role == 0, &why);
    if (rc) FAILF("valid frame rejected as %s receiver: %s (%s)", role == 0 ? "server" : "client",
                  qw_error_code_name((uint32_t)rc), why);
  }
  return 0;
}

/* One frame at bytes[0..len) against {type, flags, stream_id, payload_hex, ...}. */
static int check_frame(const uint8_t *bytes, size_t len, const jval *exp, const char *direction) {
  if (len < QW_HEADER_LEN) FAILF("shorter than a frame header");
  qw_frame_header h;
  qw_decode_header(bytes, &h);
  if (QW_HEADER_LEN + (size_t)h.length != len)
    FAILF("length field %u does not match %zu payload bytes", h.length, len - QW_HEADER_LEN);
  if (expect_num(exp, "type", h.type) < 0 || expect_num(exp, "flags", h.flags) < 0 ||
      expect_num(exp, "stream_id", h.stream_id) < 0)
    return -1;
  const uint8_t *p = bytes + QW_HEADER_LEN;
  if (json_get(exp, "payload_hex") && expect_hex(exp, "payload_hex", p, h.length) < 0) return -1;
  if (header_valid_for(&h, direction) < 0) return -1;
  qw_buf re = {0};
  if (check_payload(&h, p, exp, direction, &re) < 0) {
    qw_buf_free(&re);
    return -1;
  }
  /* re-encode the whole frame from the decoded fields */
  qw_frame_header h2 = {(uint32_t)re.len, h.type, h.flags, h.stream_id};
  uint8_t hdr[QW_HEADER_LEN];
  qw_encode_header(hdr, &h2);
  int same = re.len == h.length && memcmp(hdr, bytes, QW_HEADER_LEN) == 0 &&
             (re.len == 0 || memcmp(re.data, p, re.len) == 0);
  qw_buf_free(&re);
  if (!same) FAILF("re-encoded frame differs from the vector bytes");
  return 0;
}

/* ---- preface, frame, sequence vectors ---------------------------------------------------- */

static int check_preface_vector(const jval *v, const qw_buf *b) {
  const jval *exp = json_get(v, "expect");
  if (b->len != QW_PREFACE_LEN) FAILF("preface is %zu bytes", b->len);
  uint16_t version;
  if (qw_decode_preface(b->data, &version) < 0) FAILF("bad magic");
  if (expect_hex(exp, "magic_hex", b->data, 6) < 0 || expect_num(exp, "version", version) < 0)
    return -1;
  uint8_t re[QW_PREFACE_LEN];
  qw_encode_preface(re, version);
  if (memcmp(re, b->data, QW_PREFACE_LEN)) FAILF("re-encoded preface differs");
  return 0;
}

static int check_sequence_vector(const jval *v, const qw_buf *b) {
  const jval *exp = json_get(v, "expect");
  const char *direction = json_str(json_get(v, "direction"));
  size_t pos = 0;
  qw_buf re = {0};
  const jval *pv = json_get(exp, "preface_version");
  if (!json_is_null(pv)) {
    uint16_t version;
    if (b->len < QW_PREFACE_LEN || qw_decode_preface(b->data, &version) < 0) FAILF("bad preface");
    if (version != pv->num) FAILF("preface version %u, want %.0f", version, pv->num);
    uint8_t pre[QW_PREFACE_LEN];
    qw_encode_preface(pre, version);
    qw_buf_append(&re, pre, QW_PREFACE_LEN);
    pos = QW_PREFACE_LEN;
  }
  const jval *frames = json_get(exp, "frames");
  if (!frames || frames->type != J_ARR) FAILF("expect.frames missing");
  size_t idx = 0;
  qw_buf message = {0};
  int in_msg = 0;
  int rc = 0;
  while (pos < b->len && rc == 0) {
    if (b->len - pos < QW_HEADER_LEN) {
      rc = -1;
      snprintf(g_err, sizeof g_err, "truncated frame header at offset %zu", pos);
      break;
    }
    qw_frame_header h;
    qw_decode_header(b->data + pos, &h);
    size_t flen = QW_HEADER_LEN + h.length;
    if (pos + flen > b->len) {
      rc = -1;
      snprintf(g_err, sizeof g_err, "truncated frame at offset %zu", pos);
      break;
    }
    if (idx >= frames->n) {
      rc = -1;
      snprintf(g_err, sizeof g_err, "more frames than expected");
      break;
    }
    const jval *fe = frames->items[idx];
    const uint8_t *fb = b->data + pos;
    const uint8_t *payload = fb + QW_HEADER_LEN;
    const char *single = json_str(json_get(fe, "vector"));
    if (single) {
      /* same bytes as the single-frame vector, and decoded with its expectation */
      qw_buf sb = {0};
      const jval *sv = find_vector(single);
      if (!sv || load_hex(json_str(json_get(sv, "file")), &sb) < 0) {
        rc = -1;
        if (!sv) snprintf(g_err, sizeof g_err, "no vector %s", single);
      } else if (sb.len != flen || memcmp(sb.data, fb, flen)) {
        rc = -1;
        snprintf(g_err, sizeof g_err, "frame %zu differs from vector %s", idx, single);
      } else if (check_frame(fb, flen, json_get(sv, "expect"), json_str(json_get(sv, "direction"))) < 0) {
        rc = -1;
      } else if (expect_num(fe, "type", h.type) < 0 || expect_num(fe, "flags", h.flags) < 0 ||
                 expect_num(fe, "stream_id", h.stream_id) < 0 ||
                 expect_hex(fe, "payload_hex", payload, h.length) < 0) {
        rc = -1;
      }
      qw_buf_free(&sb);
      if (rc == 0) qw_buf_append(&re, fb, flen); /* re-encoded (and compared) by check_frame */
    } else if (json_get(fe, "payload_hex")) {
      rc = check_frame(fb, flen, fe, direction);
      if (rc == 0) qw_buf_append(&re, fb, flen);
    } else {
      /* large frames: payload_len + payload_sha256 */
      char sh[65];
      sha256_hex(payload, h.length, sh);
      if (expect_num(fe, "type", h.type) < 0 || expect_num(fe, "flags", h.flags) < 0 ||
          expect_num(fe, "stream_id", h.stream_id) < 0 ||
          expect_num(fe, "payload_len", h.length) < 0 ||
          expect_str(fe, "payload_sha256", sh) < 0 || header_valid_for(&h, direction) < 0) {
        rc = -1;
      } else {
        qw_frame_header h2 = h;
        uint8_t hdr[QW_HEADER_LEN];
        qw_encode_header(hdr, &h2);
        qw_buf_append(&re, hdr, QW_HEADER_LEN);
        qw_buf_append(&re, payload, h.length);
      }
    }
    /* reassemble MESSAGE fragments (§7.1) */
    if (rc == 0 && h.type == QW_MESSAGE && !(h.flags & QW_F_NO_MESSAGE)) {
      if (!in_msg) message.len = 0;
      qw_buf_append(&message, payload, h.length);
      in_msg = (h.flags & QW_F_MORE) != 0;
    }
    pos += flen;
    idx++;
  }
  if (rc == 0 && idx != frames->n) {
    rc = -1;
    snprintf(g_err, sizeof g_err, "got %zu frames, want %zu", idx, frames->n);
  }
  if (rc == 0 && (re.len != b->len || memcmp(re.data, b->data, b->len))) {
    rc = -1;
    snprintf(g_err, sizeof g_err, "re-encoded byte stream differs");
  }
  const jval *mexp = json_get(exp, "message");
  if (rc == 0 && mexp) {
    char sh[65];
    sha256_hex(message.data, message.len, sh);
    const jval *echo = json_get(mexp, "echo");
    if (in_msg) {
      rc = -1;
      snprintf(g_err, sizeof g_err, "message incomplete (last fragment had MORE)");
    } else if (expect_num(mexp, "length", (double)message.len) < 0 ||
               expect_str(mexp, "sha256", sh) < 0 ||
               expect_hex(mexp, "prefix_hex", message.data, 8 < message.len ? 8 : message.len) < 0) {
      rc = -1;
    } else if (echo) {
      Bench__V1__EchoRequest *r = bench__v1__echo_request__unpack(NULL, message.len, message.data);
      if (!r) {
        rc = -1;
        snprintf(g_err, sizeof g_err, "reassembled message is not an EchoRequest");
      } else {
        sha256_hex(r->payload.data, r->payload.len, sh);
        if (expect_num(echo, "payload_len", (double)r->payload.len) < 0 ||
            expect_str(echo, "payload_sha256", sh) < 0 || expect_num(echo, "count", r->count) < 0)
          rc = -1;
        for (size_t i = 0; rc == 0 && i < r->payload.len; i++)
          if (r->payload.data[i] != (uint8_t)(i % 256)) {
            rc = -1;
            snprintf(g_err, sizeof g_err, "payload[%zu] breaks the rule i %% 256", i);
          }
        bench__v1__echo_request__free_unpacked(r, NULL);
      }
    }
  }
  qw_buf_free(&message);
  qw_buf_free(&re);
  return rc;
}

/* ---- invalid vectors: a receiver in the context's state ------------------------------------ */

typedef struct mini {
  int is_server;
  int stage;          /* 0: expects the preface, 1: expects the first frame, 2: established */
  uint32_t highest;
  int s1;             /* state of stream 1: 0 none, 1 open, 2 half-closed (remote), for a server */
} mini;

typedef struct answer {
  int kind;           /* 0 none, 1 connection error, 2 stream error, 3 incomplete input */
  uint32_t code;
  const char *why;
} answer;

static answer mini_feed(mini *m, const uint8_t *b, size_t len) {
  answer a = {0, 0, NULL};
  size_t pos = 0;
  if (m->stage == 0) {
    if (len < QW_PREFACE_LEN) return (answer){3, 0, "short preface"};
    uint16_t v;
    if (qw_decode_preface(b, &v) < 0) return (answer){1, QW_PROTOCOL_ERROR, "bad magic"};
    if (v != 1) return (answer){1, QW_UNSUPPORTED_VERSION, "version not spoken"};
    m->stage = 1;
    pos = QW_PREFACE_LEN;
  }
  while (pos < len) {
    if (len - pos < QW_HEADER_LEN) return (answer){3, 0, "partial header"};
    qw_frame_header h;
    qw_decode_header(b + pos, &h);
    const char *why = NULL;
    /* steps 1-6 from the header alone, before any payload is looked at */
    int code = qw_check_header(&h, 65536, 16384, &why);
    if (code) return (answer){1, (uint32_t)code, why};
    /* step 7 */
    if (m->stage == 1) {
      if (!(h.type == QW_SETTINGS || (!m->is_server && h.type == QW_GOAWAY)))
        return (answer){1, QW_PROTOCOL_ERROR, "frame before SETTINGS"};
    } else if (h.type == QW_SETTINGS) {
      return (answer){1, QW_PROTOCOL_ERROR, "second SETTINGS"};
    }
    /* step 8 */
    code = qw_check_direction(&h, m->is_server, &why);
    if (code) return (answer){1, (uint32_t)code, why};
    if (len - pos < QW_HEADER_LEN + (size_t)h.length) return (answer){3, 0, "partial payload"};
    const uint8_t *p = b + pos + QW_HEADER_LEN;
    pos += QW_HEADER_LEN + h.length;
    if (qw_is_extension(h.type)) continue;
    /* step 9 */
    switch (h.type) {
    case QW_SETTINGS: {
      qw_settings s;
      qw_settings_default(&s);
      code = qw_settings_apply(&s, p, h.length, &why);
      if (code) return (answer){1, (uint32_t)code, why};
      m->stage = 2;
      break;
    }
    case QW_HEADERS:
      if (m->is_server) {
        uint32_t want = m->highest ? m->highest + 2 : 1;
        if (h.stream_id != want) return (answer){1, QW_PROTOCOL_ERROR, "HEADERS on a wrong id"};
        m->highest = h.stream_id;
        Wire__V1__RequestHeaders *rh = wire__v1__request_headers__unpack(NULL, h.length, p);
        if (!rh || !qw_utf8_valid((const uint8_t *)rh->method, strlen(rh->method))) {
          if (rh) wire__v1__request_headers__free_unpacked(rh, NULL);
          return (answer){2, QW_PROTOCOL_ERROR, "undecodable RequestHeaders"};
        }
        wire__v1__request_headers__free_unpacked(rh, NULL);
        if (h.stream_id == 1) m->s1 = (h.flags & QW_F_END_STREAM) ? 2 : 1;
      } else if (h.stream_id > m->highest) {
        return (answer){1, QW_PROTOCOL_ERROR, "HEADERS on a never-opened stream"};
      }
      break;
    case QW_MESSAGE:
    case QW_RST:
    case QW_TRAILERS:
      if (h.stream_id > m->highest)
        return (answer){1, QW_PROTOCOL_ERROR, "frame on a never-opened stream"};
      if (m->is_server && h.type == QW_MESSAGE && h.stream_id == 1) {
        if (m->s1 == 2) return (answer){2, QW_STREAM_CLOSED, "MESSAGE after END_STREAM"};
        if (m->s1 == 1 && (h.flags & QW_F_END_STREAM)) m->s1 = 2;
      }
      break;
    case QW_WINDOW_UPDATE: {
      uint32_t inc = qw_get_u32(p);
      if (h.stream_id == 0) {
        if (inc == 0) return (answer){1, QW_PROTOCOL_ERROR, "WINDOW_UPDATE 0 on stream 0"};
      } else if (h.stream_id > m->highest) {
        return (answer){1, QW_PROTOCOL_ERROR, "WINDOW_UPDATE on a never-opened stream"};
      } else if (inc == 0) {
        return (answer){2, QW_PROTOCOL_ERROR, "WINDOW_UPDATE 0 on an open stream"};
      }
      break;
    }
    default: break;
    }
  }
  return a;
}

static int check_invalid_vector(const jval *v, const qw_buf *b) {
  const jval *exp = json_get(v, "expect");
  const char *context = json_str(json_get(v, "context"));
  const char *error = json_str(json_get(exp, "error"));
  double code;
  if (!context || !error || jnum(exp, "code", &code) < 0) FAILF("incomplete invalid vector");
  mini m = {0, 0, 0, 0};
  m.is_server = strstr(context, "receiver: a server") != NULL;
  if (!m.is_server && !strstr(context, "receiver: a client")) FAILF("unknown context");
  if (strstr(context, "just accepted")) {
    m.stage = 0;
  } else if (strstr(context, "read a valid client preface")) {
    m.stage = 1;
  } else if (strstr(context, "completed handshake")) {
    m.stage = 2;
    if (strstr(context, "stream 1 is open") || strstr(context, "stream 1 open")) {
      m.highest = 1;
      m.s1 = strstr(context, "END_STREAM received;") ? 2 : 1;
    }
  } else {
    FAILF("unknown context: %s", context);
  }
  const jval *ho = json_get(exp, "header_only");
  if (ho && ho->type == J_BOOL && ho->b && b->len != QW_HEADER_LEN)
    FAILF("header_only vector is %zu bytes", b->len);
  answer a = mini_feed(&m, b->data, b->len);
  int want_kind = !strcmp(error, "connection") ? 1 : 2;
  if (a.kind == 3) FAILF("receiver needed more input (%s) instead of failing", a.why);
  if (a.kind == 0) FAILF("input accepted, want %s error %.0f", error, code);
  if (a.kind != want_kind || a.code != (uint32_t)code)
    FAILF("got %s error %s (%s), want %s error %s", a.kind == 1 ? "connection" : "stream",
          qw_error_code_name(a.code), a.why ? a.why : "", error, qw_error_code_name((uint32_t)code));
  return 0;
}

/* ---- replays: the real client against a scripted server ----------------------------------- */

typedef struct fake_server {
  int fd;
  const uint8_t *script;
  size_t script_len;
  qw_buf got; /* everything the client wrote */
} fake_server;

static void *fake_server_run(void *arg) {
  fake_server *fs = arg;
  size_t off = 0;
  while (off < fs->script_len) {
    ssize_t n = write(fs->fd, fs->script + off, fs->script_len - off);
    if (n <= 0) break;
    off += (size_t)n;
  }
  char buf[65536];
  for (;;) {
    ssize_t n = read(fs->fd, buf, sizeof buf);
    if (n <= 0) break;
    qw_buf_append(&fs->got, buf, (size_t)n);
  }
  close(fs->fd);
  return NULL;
}

typedef int (*client_fn)(int fd, void *arg);

/* Runs client(fd) against a thread that writes `script` and records the client's bytes. */
static int replay(const qw_buf *script, client_fn client, void *arg, qw_buf *client_bytes) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) FAILF("socketpair: %s", strerror(errno));
  fake_server fs = {sv[1], script->data, script->len, {0}};
  pthread_t t;
  pthread_create(&t, NULL, fake_server_run, &fs);
  int rc = client(sv[0], arg); /* the client owns (and closes) sv[0] */
  pthread_join(t, NULL);
  *client_bytes = fs.got;
  return rc;
}

static int concat_vectors(const char *const *names, qw_buf *out) {
  out->len = 0;
  for (const char *const *n = names; *n; n++) {
    qw_buf b = {0};
    if (load_vector_bytes(*n, &b) < 0) {
      qw_buf_free(&b);
      return -1;
    }
    qw_buf_append(out, b.data, b.len);
    qw_buf_free(&b);
  }
  return 0;
}

static uint8_t *echo_req(const char *payload, size_t plen, uint32_t count, size_t *n) {
  Bench__V1__EchoRequest r = BENCH__V1__ECHO_REQUEST__INIT;
  r.payload.data = (uint8_t *)payload;
  r.payload.len = plen;
  r.count = count;
  *n = bench__v1__echo_request__get_packed_size(&r);
  uint8_t *b = malloc(*n + 1);
  bench__v1__echo_request__pack(&r, b);
  return b;
}

/* one call; expects `nresp` EchoResponses with `payload` and index 0.., status `want_code` */
static int run_call(qw_conn *c, const char *method, uint64_t timeout_us, const qw_md *md,
                    size_t nmd, const char *payload, uint32_t count, int nresp, int want_code,
                    const char *want_msg, qw_stream **keep) {
  size_t n;
  uint8_t *req = echo_req(payload, strlen(payload), count, &n);
  qw_stream *s = qw_stream_open(c, method, timeout_us, md, nmd, QW_ENC_IDENTITY, 0);
  qw_stream_send(s, req, n, 1);
  free(req);
  qw_msg *m;
  int got = 0, rc = 0;
  while (qw_stream_recv(s, &m) == 1) {
    Bench__V1__EchoResponse *r = bench__v1__echo_response__unpack(NULL, m->len, m->data);
    if (!r || r->payload.len != strlen(payload) || memcmp(r->payload.data, payload, r->payload.len) ||
        r->index != (uint32_t)got) {
      rc = -1;
      snprintf(g_err, sizeof g_err, "%s: response %d wrong", method, got);
    }
    if (r) bench__v1__echo_response__free_unpacked(r, NULL);
    qw_msg_free(m);
    got++;
  }
  if (rc == 0 && got != nresp) {
    rc = -1;
    snprintf(g_err, sizeof g_err, "%s: %d responses, want %d", method, got, nresp);
  }
  if (rc == 0 && (s->status.code != want_code || (want_msg && strcmp(s->status.message, want_msg)))) {
    rc = -1;
    snprintf(g_err, sizeof g_err, "%s: status %d \"%s\", want %d \"%s\"", method, s->status.code,
             s->status.message, want_code, want_msg ? want_msg : "");
  }
  if (keep && rc == 0)
    *keep = s;
  else
    qw_stream_free(s);
  return rc;
}

static qw_conn *replay_connect(int fd) {
  qw_config cfg;
  qw_config_default(&cfg); /* SETTINGS: MAX_MESSAGE_SIZE=4194304, ACCEPT_ENCODINGS=7 */
  qw_status st;
  qw_conn *c = qw_connect_fd(fd, &cfg, &st);
  if (!c) snprintf(g_err, sizeof g_err, "handshake failed: %s", st.message);
  qw_status_clear(&st);
  return c;
}

static int client_unary(int fd, void *arg) {
  int then_stream = arg != NULL;
  qw_conn *c = replay_connect(fd);
  if (!c) return -1;
  qw_md md = {"x-request-id", 0, (uint8_t *)"r1", 2};
  int rc = run_call(c, "/bench.v1.EchoService/Unary", 5000000, &md, 1, "hi", 0, 1, 0, "", NULL);
  if (rc == 0 && then_stream)
    rc = run_call(c, "/bench.v1.EchoService/ServerStream", 0, NULL, 0, "x", 3, 3, 0, "", NULL);
  qw_close(c);
  return rc;
}

static int expect_bytes(const qw_buf *got, const char *const *names) {
  qw_buf want = {0};
  if (concat_vectors(names, &want) < 0) return -1;
  int same = got->len == want.len && memcmp(got->data, want.data, want.len) == 0;
  size_t at = 0;
  while (at < got->len && at < want.len && got->data[at] == want.data[at]) at++;
  size_t want_len = want.len;
  if (getenv("QW_DUMP")) { char *g = hex_encode(got->data, got->len), *w = hex_encode(want.data, want.len); fprintf(stderr, "got  %s\nwant %s\n", g, w); free(g); free(w); }
  qw_buf_free(&want);
  if (!same) FAILF("client wrote %zu bytes, vectors have %zu; first difference at byte %zu",
                   got->len, want_len, at);
  return 0;
}

static int replay_unary(int then_stream) {
  qw_buf script = {0}, got = {0};
  static const char *const srv1[] = {"unary_call_server", NULL};
  static const char *const srv2[] = {"unary_then_server_stream_server", NULL};
  static const char *const cli1[] = {"unary_call_client", "goaway_client_close", NULL};
  static const char *const cli2[] = {"unary_then_server_stream_client", "goaway_client_close", NULL};
  int rc = concat_vectors(then_stream ? srv2 : srv1, &script);
  if (rc == 0) rc = replay(&script, client_unary, then_stream ? (void *)1 : NULL, &got);
  if (rc == 0) rc = expect_bytes(&got, then_stream ? cli2 : cli1);
  qw_buf_free(&script);
  qw_buf_free(&got);
  return rc;
}

static int client_rejected(int fd, void *arg) {
  (void)arg;
  qw_config cfg;
  qw_config_default(&cfg);
  qw_status st;
  qw_conn *c = qw_connect_fd(fd, &cfg, &st);
  int rc = 0;
  if (c) {
    qw_close(c);
    FAILF("handshake succeeded against a version rejection");
  }
  if (st.code != QW_UNAVAILABLE || !strstr(st.message, "UNSUPPORTED_VERSION") ||
      !strstr(st.message, "supported versions: 1")) {
    snprintf(g_err, sizeof g_err, "status %d \"%s\"", st.code, st.message);
    rc = -1;
  }
  qw_status_clear(&st);
  return rc;
}

static int replay_version_rejection(void) {
  qw_buf script = {0}, got = {0};
  static const char *const srv[] = {"version_rejection_server", NULL};
  /* the client sends nothing after a GOAWAY it received (§11.3) */
  static const char *const cli[] = {"preface_client", "settings_client", NULL};
  int rc = concat_vectors(srv, &script);
  if (rc == 0) rc = replay(&script, client_rejected, NULL, &got);
  if (rc == 0) rc = expect_bytes(&got, cli);
  qw_buf_free(&script);
  qw_buf_free(&got);
  return rc;
}

static int client_split(int fd, void *arg) {
  (void)arg;
  qw_conn *c = replay_connect(fd);
  if (!c) return -1;
  char *payload = malloc(70000);
  for (int i = 0; i < 70000; i++) payload[i] = (char)(i % 256);
  size_t n;
  Bench__V1__EchoRequest r = BENCH__V1__ECHO_REQUEST__INIT;
  r.payload.data = (uint8_t *)payload;
  r.payload.len = 70000;
  n = bench__v1__echo_request__get_packed_size(&r);
  uint8_t *msg = malloc(n);
  bench__v1__echo_request__pack(&r, msg);
  qw_stream *s = qw_stream_open(c, "/bench.v1.EchoService/ClientStream", 0, NULL, 0, 0, 0);
  int rc = qw_stream_send(s, msg, n, 0);
  if (rc < 0) snprintf(g_err, sizeof g_err, "send failed: %s", s->status.message);
  free(msg);
  free(payload);
  qw_stream_free(s); /* cancels: RST(CANCEL) */
  qw_close(c);
  return rc;
}

static int replay_split(void) {
  qw_buf script = {0}, got = {0}, want = {0};
  static const char *const srv[] = {"preface_server", "settings_server", NULL};
  int rc = concat_vectors(srv, &script);
  if (rc == 0) rc = replay(&script, client_split, NULL, &got);
  if (rc == 0) rc = load_vector_bytes("message_split_70000", &want);
  if (rc == 0) {
    /* skip preface + SETTINGS + HEADERS, then the MESSAGE frames must be the vector's bytes */
    size_t pos = QW_PREFACE_LEN;
    qw_frame_header h;
    for (int k = 0; k < 2 && pos + QW_HEADER_LEN <= got.len; k++) {
      qw_decode_header(got.data + pos, &h);
      pos += QW_HEADER_LEN + h.length;
    }
    if (pos + want.len > got.len || memcmp(got.data + pos, want.data, want.len)) {
      rc = -1;
      snprintf(g_err, sizeof g_err, "the client's MESSAGE frames differ from message_split_70000");
    } else {
      /* then RST(CANCEL) on stream 1 and GOAWAY(0, NO_ERROR) */
      qw_buf tail = {0};
      static const char *const t[] = {"rst_cancel", "goaway_client_close", NULL};
      concat_vectors(t, &tail);
      if (got.len - pos - want.len != tail.len || memcmp(got.data + pos + want.len, tail.data, tail.len)) {
        if (getenv("QW_DUMP")) { char *g = hex_encode(got.data + pos + want.len, got.len - pos - want.len); fprintf(stderr, "tail %s\n", g); free(g); }
        rc = -1;
        snprintf(g_err, sizeof g_err, "after the message: want rst_cancel + goaway_client_close");
      }
      qw_buf_free(&tail);
    }
  }
  qw_buf_free(&script);
  qw_buf_free(&got);
  qw_buf_free(&want);
  return rc;
}

typedef struct status_case {
  const char *method;
  int want_code;
  const char *want_msg;
  const char *md_dump; /* expected trailing metadata "k=v;" (binary as hex) */
} status_case;

static int client_status(int fd, void *arg) {
  status_case *sc = arg;
  qw_conn *c = replay_connect(fd);
  if (!c) return -1;
  qw_stream *s = NULL;
  int rc = run_call(c, sc->method, 0, NULL, 0, "q", 0, 0, sc->want_code, sc->want_msg, &s);
  if (rc == 0) {
    char dump[512] = "";
    for (size_t i = 0; i < s->n_trailers_md; i++) {
      char *v = s->trailers_md[i].binary ? hex_encode(s->trailers_md[i].value, s->trailers_md[i].len)
                                         : strdup((char *)s->trailers_md[i].value);
      snprintf(dump + strlen(dump), sizeof dump - strlen(dump), "%s=%s;", s->trailers_md[i].key, v);
      free(v);
    }
    if (strcmp(dump, sc->md_dump)) {
      rc = -1;
      snprintf(g_err, sizeof g_err, "trailing metadata \"%s\", want \"%s\"", dump, sc->md_dump);
    } else if (strcmp(s->status.source, "trailers")) {
      rc = -1;
      snprintf(g_err, sizeof g_err, "status source %s", s->status.source);
    }
    qw_stream_free(s);
  }
  qw_close(c);
  return rc;
}

static int replay_status(const char *trailers_vector, status_case *sc) {
  qw_buf script = {0}, got = {0};
  const char *srv[] = {"preface_server", "settings_server", trailers_vector, NULL};
  int rc = concat_vectors(srv, &script);
  if (rc == 0) rc = replay(&script, client_status, sc, &got);
  qw_buf_free(&script);
  qw_buf_free(&got);
  return rc;
}

static int client_bad_frame(int fd, void *arg) {
  (void)arg;
  qw_conn *c = replay_connect(fd);
  if (!c) return -1;
  qw_stream *s = qw_stream_open(c, "/bench.v1.EchoService/Unary", 0, NULL, 0, 0, 0);
  qw_msg *m;
  while (qw_stream_recv(s, &m) == 1) qw_msg_free(m);
  int rc = 0;
  if (s->status.code != QW_UNAVAILABLE || strcmp(s->status.source, "connection")) {
    rc = -1;
    snprintf(g_err, sizeof g_err, "status %d (%s) \"%s\", want UNAVAILABLE from the connection error",
             s->status.code, s->status.source, s->status.message);
  }
  qw_stream_free(s);
  qw_close(c);
  return rc;
}

static int replay_bad_frame(void) {
  qw_buf script = {0}, got = {0};
  static const char *const srv[] = {"preface_server", "settings_server",
                                    "invalid_headers_end_stream_from_server", NULL};
  int rc = concat_vectors(srv, &script);
  if (rc == 0) rc = replay(&script, client_bad_frame, NULL, &got);
  if (rc == 0) {
    /* preface, SETTINGS, HEADERS(1), then GOAWAY(0, PROTOCOL_ERROR, reason) and nothing else */
    size_t pos = QW_PREFACE_LEN;
    qw_frame_header h = {0, 0, 0, 0};
    int frames = 0;
    while (pos + QW_HEADER_LEN <= got.len) {
      qw_decode_header(got.data + pos, &h);
      if (pos + QW_HEADER_LEN + h.length > got.len) break;
      frames++;
      if (pos + QW_HEADER_LEN + h.length == got.len) break;
      pos += QW_HEADER_LEN + h.length;
    }
    if (frames != 3 || h.type != QW_GOAWAY || h.length < 8 ||
        qw_get_u32(got.data + pos + QW_HEADER_LEN) != 0 ||
        qw_get_u32(got.data + pos + QW_HEADER_LEN + 4) != QW_PROTOCOL_ERROR) {
      rc = -1;
      snprintf(g_err, sizeof g_err, "want SETTINGS, HEADERS, GOAWAY(0, PROTOCOL_ERROR); got %d frames, last type %u",
               frames, h.type);
    }
  }
  qw_buf_free(&script);
  qw_buf_free(&got);
  return rc;
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: qwvectors VECTORS_DIR\n");
    return 2;
  }
  g_dir = argv[1];
  char path[4096];
  snprintf(path, sizeof path, "%s/vectors.json", g_dir);
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    fprintf(stderr, "cannot read %s: %s\n", path, strerror(errno));
    printf("0 passed, 1 failed\n");
    return 1;
  }
  char err[200];
  jval *root = json_parse(text, len, err, sizeof err);
  free(text);
  if (!root || root->type != J_ARR) {
    fprintf(stderr, "vectors.json: %s\n", root ? "not a list" : err);
    json_free(root);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  g_vectors = root;
  for (size_t i = 0; i < root->n; i++) {
    const jval *v = root->items[i];
    const char *name = json_str(json_get(v, "name"));
    const char *kind = json_str(json_get(v, "kind"));
    const char *file = json_str(json_get(v, "file"));
    const char *direction = json_str(json_get(v, "direction"));
    g_err[0] = 0;
    if (!name || !kind || !file || !direction) {
      snprintf(g_err, sizeof g_err, "vector %zu lacks name/kind/file/direction", i);
      report(name ? name : "?", -1);
      continue;
    }
    qw_buf b = {0};
    int rc = load_hex(file, &b);
    if (rc == 0) {
      if (!strcmp(kind, "preface")) rc = check_preface_vector(v, &b);
      else if (!strcmp(kind, "frame")) rc = check_frame(b.data, b.len, json_get(v, "expect"), direction);
      else if (!strcmp(kind, "sequence")) rc = check_sequence_vector(v, &b);
      else if (!strcmp(kind, "invalid")) rc = check_invalid_vector(v, &b);
      else {
        rc = -1;
        snprintf(g_err, sizeof g_err, "unknown kind %s", kind);
      }
    }
    qw_buf_free(&b);
    report(name, rc);
  }
  /* the client itself, byte for byte */
  g_err[0] = 0;
  report("replay:unary_call (client output == unary_call_client + goaway_client_close)", replay_unary(0));
  report("replay:unary_then_server_stream (client output == unary_then_server_stream_client)", replay_unary(1));
  report("replay:message_split_70000 (client fragments a 70004-byte message identically)", replay_split());
  report("replay:version_rejection_server (handshake fails UNAVAILABLE, no GOAWAY sent)", replay_version_rejection());
  report("replay:invalid_headers_end_stream_from_server (client sends GOAWAY(PROTOCOL_ERROR))", replay_bad_frame());
  status_case nf = {"/bench.v1.EchoService/Unary", 5, "quiz 42 not found", "x-trace=t;x-blob-bin=00ff;"};
  report("replay:trailers_not_found (status 5 + trailing metadata, trailers-only)", replay_status("trailers_not_found", &nf));
  status_case un = {"/bench.v1.EchoService/Nope", 12, "method not found: /bench.v1.EchoService/Nope", ""};
  report("replay:trailers_only_unimplemented (status 12)", replay_status("trailers_only_unimplemented", &un));
  json_free(root);
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
