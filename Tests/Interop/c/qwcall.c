/*
 * qwcall HOST:PORT METHOD [options]: one (or a few) calls over the Quizwire framed wire with the
 * qwire C client. Output is one line per event, in a stable format the interop tests parse:
 *
 *   connected version=1 max_frame_size=65536 initial_stream_window=... (the server's SETTINGS)
 *   ping ok rtt_us=N
 *   headers encoding=ENC metadata=N
 *   header-md KEY text VALUE | header-md KEY binary HEX
 *   message index=I payload_len=L payload_hex=HEX|payload_crc32=X compressed=0|1 wire_len=W fragments=F
 *   health status=N NAME
 *   messages received=N                     (with --summary instead of one line per message)
 *   trailer-md KEY text VALUE | trailer-md KEY binary HEX
 *   frames stream=S sent=N sent_more=N recv=N recv_more=N window_updates_sent=N window_updates_recv=N
 *   check-failed REASON                      (the response did not match the echo contract)
 *   status CODE MESSAGE
 *   status_source trailers|rst|client|connection|goaway
 *   followup ...                             (--cancel-after / --followup: PING + Unary afterwards)
 *
 * Exit code: the final status code of the (last) main call (0 = OK); 100 usage, 101 could not
 * connect / handshake failed, 102 the connection failed during the call, 103 a check failed
 * (wrong echo, or the follow-up after a cancel failed).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "bench/v1/echo.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "qwire.h"

#define EXIT_USAGE 100
#define EXIT_CONNECT 101
#define EXIT_CONNECTION 102
#define EXIT_CHECK 103

typedef struct opts {
  const char *addr;
  const char *method;      /* without a leading '/' */
  const char *payload_text;
  long payload_size;       /* -1: use text */
  unsigned count;
  long messages;           /* -1: default per method */
  int encoding;
  long timeout_ms;
  long grace_ms;
  long cancel_after;       /* -1: off */
  const char *service;
  qw_md md[16];
  size_t n_md;
  int separate_eos;
  int calls;
  int ping;
  int summary;
  int followup;
  uint32_t stream_window;
  uint32_t conn_window;
  uint16_t version;
} opts;

static int checks_failed;

static void usage(void) {
  fprintf(stderr,
          "usage: qwcall HOST:PORT METHOD [options]\n"
          "  METHOD  bench.v1.EchoService/{Unary,ServerStream,ClientStream,Bidi},\n"
          "          grpc.health.v1.Health/Check, or any other (sent an EchoRequest)\n"
          "  --payload TEXT | --payload-size N   request payload (size N: byte j = j %% 256)\n"
          "  --count N            ServerStream: responses to ask for\n"
          "  --messages N         ClientStream/Bidi: request messages (Bidi: one round trip each)\n"
          "  --gzip | --deflate   compress requests (responses come back compressed the same way)\n"
          "  --timeout-ms N       deadline, from the moment HEADERS is written\n"
          "  --timer-grace-ms N   the client's own timer fires N ms after the deadline\n"
          "  --cancel-after N     cancel after N responses, then PING + Unary on the connection\n"
          "  --followup           PING + Unary on the same connection after the call\n"
          "  --service NAME       Health/Check: the service to ask about\n"
          "  --metadata KEY=VAL   request metadata (repeatable; VAL is hex for -bin keys)\n"
          "  --separate-eos       end the request with NO_MESSAGE|END_STREAM (not on the last message)\n"
          "  --calls N            repeat the call N times on the same connection\n"
          "  --ping               PING before the call\n"
          "  --summary            count response messages instead of printing each\n"
          "  --stream-window N    own INITIAL_STREAM_WINDOW (>= 65536)\n"
          "  --conn-window N      own INITIAL_CONNECTION_WINDOW (>= 65536)\n"
          "  --version V          preface version to ask for (version rejection test)\n");
  exit(EXIT_USAGE);
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

static void print_hex(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

static void print_md(const char *prefix, const qw_md *md, size_t n) {
  for (size_t i = 0; i < n; i++) {
    printf("%s %s %s ", prefix, md[i].key, md[i].binary ? "binary" : "text");
    if (md[i].binary)
      print_hex(md[i].value, md[i].len);
    else
      printf("%s", (const char *)md[i].value);
    printf("\n");
  }
}

/* request payload of message i */
static uint8_t *make_payload(const opts *o, long i, size_t *len) {
  if (o->payload_size >= 0) {
    uint8_t *p = malloc((size_t)o->payload_size + 1);
    for (long j = 0; j < o->payload_size; j++) p[j] = (uint8_t)((j + i) % 256);
    *len = (size_t)o->payload_size;
    return p;
  }
  const char *t = o->payload_text ? o->payload_text : "hello";
  char *p = malloc(strlen(t) + 32);
  if (o->messages > 1)
    sprintf(p, "%s#%ld", t, i);
  else
    strcpy(p, t);
  *len = strlen(p);
  return (uint8_t *)p;
}

static uint8_t *pack_echo(const uint8_t *payload, size_t len, uint32_t count, size_t *out_len) {
  Bench__V1__EchoRequest req = BENCH__V1__ECHO_REQUEST__INIT;
  req.payload.data = (uint8_t *)payload;
  req.payload.len = len;
  req.count = count;
  size_t n = bench__v1__echo_request__get_packed_size(&req);
  uint8_t *buf = malloc(n ? n : 1);
  bench__v1__echo_request__pack(&req, buf);
  *out_len = n;
  return buf;
}

static void check_failed(const char *fmt, const char *detail, long a, long b) {
  checks_failed++;
  printf("check-failed ");
  printf(fmt, detail, a, b);
  printf("\n");
}

/* prints one EchoResponse; verifies payload / index when expect_payload is set */
static void show_echo(const opts *o, const qw_msg *m, const uint8_t *expect_payload,
                      size_t expect_len, long expect_index) {
  Bench__V1__EchoResponse *r = bench__v1__echo_response__unpack(NULL, m->len, m->data);
  if (!r) {
    check_failed("%s (%ld, %ld)", "response is not an EchoResponse", (long)m->len, 0);
    return;
  }
  if (!o->summary) {
    printf("message index=%u payload_len=%zu ", r->index, r->payload.len);
    if (r->payload.len <= 32) {
      printf("payload_hex=");
      print_hex(r->payload.data, r->payload.len);
    } else {
      printf("payload_crc32=%08lx",
             crc32(0L, r->payload.data, (uInt)r->payload.len));
    }
    printf(" compressed=%d wire_len=%zu fragments=%d\n", m->compressed, m->wire_len, m->fragments);
  }
  if (expect_payload) {
    if (r->payload.len != expect_len ||
        (expect_len && memcmp(r->payload.data, expect_payload, expect_len) != 0))
      check_failed("%s: got %ld bytes, want %ld", "echoed payload differs", (long)r->payload.len,
                   (long)expect_len);
  }
  if (expect_index >= 0 && (long)r->index != expect_index)
    check_failed("%s: got %ld, want %ld", "index", (long)r->index, expect_index);
  bench__v1__echo_response__free_unpacked(r, NULL);
}

static void print_end(qw_stream *s) {
  printf("frames stream=%u sent=%llu sent_more=%llu recv=%llu recv_more=%llu "
         "window_updates_sent=%llu window_updates_recv=%llu\n",
         s->id, (unsigned long long)s->frames_sent, (unsigned long long)s->frames_sent_more,
         (unsigned long long)s->frames_recv, (unsigned long long)s->frames_recv_more,
         (unsigned long long)s->window_updates_sent, (unsigned long long)s->window_updates_recv);
  print_md("trailer-md", s->trailers_md, s->n_trailers_md);
  printf("status %d %s\n", s->status.code, s->status.message ? s->status.message : "");
  printf("status_source %s\n", s->status.source ? s->status.source : "?");
  fflush(stdout);
}

static void print_headers(qw_stream *s) {
  printf("headers encoding=%s metadata=%zu\n", qw_encoding_name(s->resp_encoding),
         s->n_headers_md);
  print_md("header-md", s->headers_md, s->n_headers_md);
}

/* Receives until the end; returns the number of messages. */
static long recv_all(const opts *o, qw_stream *s, const uint8_t *expect, size_t expect_len,
                     int check_index, long cancel_after, int headers_shown) {
  long n = 0;
  qw_msg *m;
  for (;;) {
    if (cancel_after >= 0 && n >= cancel_after) {
      qw_stream_cancel(s);
      printf("cancelled after=%ld\n", n);
      break;
    }
    int r = qw_stream_recv(s, &m);
    if (!headers_shown && s->got_headers) {
      print_headers(s);
      headers_shown = 1;
    }
    if (r == 0) break;
    show_echo(o, m, expect, expect_len, check_index ? n : -1);
    n++;
    qw_msg_free(m);
  }
  if (o->summary) printf("messages received=%ld\n", n);
  return n;
}

static int do_health(const opts *o, qw_conn *c, uint64_t timeout_us) {
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  req.service = (char *)(o->service ? o->service : "");
  size_t n = grpc__health__v1__health_check_request__get_packed_size(&req);
  uint8_t *buf = malloc(n ? n : 1);
  grpc__health__v1__health_check_request__pack(&req, buf);
  char method[300];
  snprintf(method, sizeof method, "/%s", o->method);
  qw_stream *s = qw_stream_open(c, method, timeout_us, o->md, o->n_md, o->encoding, 0);
  if (s->id) printf("call stream=%u\n", s->id);
  s->timer_grace_ns = o->grace_ms * 1000000LL;
  qw_stream_send(s, buf, n, 1);
  free(buf);
  qw_msg *m;
  int got = 0;
  while (qw_stream_recv(s, &m) == 1) {
    if (!got) print_headers(s);
    Grpc__Health__V1__HealthCheckResponse *r =
        grpc__health__v1__health_check_response__unpack(NULL, m->len, m->data);
    if (!r) {
      check_failed("%s (%ld, %ld)", "response is not a HealthCheckResponse", 0, 0);
    } else {
      const char *names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
      int st = (int)r->status;
      printf("health status=%d %s\n", st, st >= 0 && st <= 3 ? names[st] : "?");
      grpc__health__v1__health_check_response__free_unpacked(r, NULL);
    }
    got++;
    qw_msg_free(m);
  }
  if (s->status.code == QW_OK && got != 1)
    check_failed("%s: got %ld, want %ld", "health responses", got, 1);
  print_end(s);
  int code = s->status.code;
  int conn_failed = s->status.source && !strcmp(s->status.source, "connection");
  qw_stream_free(s);
  return conn_failed ? -code : code;
}

/* One call of the chosen method; returns its status code, or -code when the connection failed. */
static int do_call(const opts *o, qw_conn *c) {
  uint64_t timeout_us = o->timeout_ms > 0 ? (uint64_t)o->timeout_ms * 1000 : 0;
  if (strcmp(o->method, "grpc.health.v1.Health/Check") == 0) return do_health(o, c, timeout_us);
  const char *mname = strrchr(o->method, '/');
  mname = mname ? mname + 1 : o->method;
  int is_echo = strncmp(o->method, "bench.v1.EchoService/", 21) == 0;
  int server_stream = is_echo && !strcmp(mname, "ServerStream");
  int client_stream = is_echo && !strcmp(mname, "ClientStream");
  int bidi = is_echo && !strcmp(mname, "Bidi");
  char method[300];
  snprintf(method, sizeof method, "/%s", o->method);
  long nmsg = o->messages >= 0 ? o->messages : 1;
  if (!client_stream && !bidi) nmsg = 1;
  int eos_on_headers = (client_stream || bidi) && nmsg == 0;
  qw_stream *s = qw_stream_open(c, method, timeout_us, o->md, o->n_md, o->encoding, eos_on_headers);
  if (s->id) printf("call stream=%u\n", s->id);
  s->timer_grace_ns = o->grace_ms * 1000000LL;
  long received = 0;
  size_t last_len = 0;
  uint8_t *last = NULL;
  if (bidi) {
    int headers_shown = 0;
    for (long i = 0; i < nmsg && !s->done; i++) {
      size_t plen, mlen;
      uint8_t *p = make_payload(o, i, &plen);
      uint8_t *msg = pack_echo(p, plen, 0, &mlen);
      int last_msg = i == nmsg - 1;
      qw_stream_send(s, msg, mlen, last_msg && !o->separate_eos);
      free(msg);
      qw_msg *m;
      /* interactive: wait for this message's echo before sending the next */
      if (qw_stream_recv(s, &m) == 1) {
        if (!headers_shown) {
          print_headers(s);
          headers_shown = 1;
        }
        show_echo(o, m, p, plen, i);
        received++;
        qw_msg_free(m);
      } else if (s->status.code == QW_OK) {
        check_failed("%s: stream ended after %ld of %ld echoes", "bidi", i, nmsg);
      }
      free(p);
    }
    if (o->separate_eos || nmsg == 0) qw_stream_half_close(s);
    received += recv_all(o, s, NULL, 0, 0, -1, headers_shown);
    if (s->status.code == QW_OK && received != nmsg)
      check_failed("%s: got %ld, want %ld", "bidi echoes", received, nmsg);
  } else if (client_stream) {
    for (long i = 0; i < nmsg && !s->done; i++) {
      size_t plen, mlen;
      uint8_t *p = make_payload(o, i, &plen);
      uint8_t *msg = pack_echo(p, plen, 0, &mlen);
      qw_stream_send(s, msg, mlen, i == nmsg - 1 && !o->separate_eos);
      free(msg);
      free(last);
      last = p;
      last_len = plen;
    }
    if (o->separate_eos && nmsg > 0) qw_stream_half_close(s);
    qw_msg *m;
    int headers_shown = 0;
    while (qw_stream_recv(s, &m) == 1) {
      if (!headers_shown) {
        print_headers(s);
        headers_shown = 1;
      }
      show_echo(o, m, last, last_len, nmsg);
      received++;
      qw_msg_free(m);
    }
    if (s->status.code == QW_OK && received != 1)
      check_failed("%s: got %ld, want %ld", "client-stream responses", received, 1);
  } else {
    size_t plen, mlen;
    uint8_t *p = make_payload(o, 0, &plen);
    uint8_t *msg = pack_echo(p, plen, server_stream ? o->count : 0, &mlen);
    qw_stream_send(s, msg, mlen, !o->separate_eos);
    if (o->separate_eos) qw_stream_half_close(s);
    free(msg);
    received = recv_all(o, s, p, plen, server_stream, server_stream ? o->cancel_after : -1, 0);
    free(p);
    if (s->status.code == QW_OK) {
      long want = server_stream ? (long)o->count : 1;
      if (received != want)
        check_failed("%s: got %ld, want %ld", "responses", received, want);
    }
  }
  free(last);
  print_end(s);
  int code = s->status.code;
  int conn_failed = s->status.source && !strcmp(s->status.source, "connection");
  qw_stream_free(s);
  return conn_failed ? -code : code;
}

/* After a cancel (or with --followup): the connection must still serve PING and a new call. */
static int followup(qw_conn *c) {
  int64_t rtt = 0;
  /* a liveness check, not a latency one: generous, the server may first send what was in
   * flight for the cancelled stream */
  if (qw_ping(c, 20000, &rtt) < 0) {
    printf("followup ping failed: %s\n", c->dead ? c->dead_msg : "timeout");
    return -1;
  }
  printf("followup ping ok rtt_us=%lld\n", (long long)rtt);
  const char *text = "after-cancel";
  size_t mlen;
  uint8_t *msg = pack_echo((const uint8_t *)text, strlen(text), 0, &mlen);
  qw_stream *s = qw_stream_open(c, "/bench.v1.EchoService/Unary", 5000000, NULL, 0, 0, 0);
  qw_stream_send(s, msg, mlen, 1);
  free(msg);
  qw_msg *m;
  int ok = 0;
  while (qw_stream_recv(s, &m) == 1) {
    Bench__V1__EchoResponse *r = bench__v1__echo_response__unpack(NULL, m->len, m->data);
    if (r && r->payload.len == strlen(text) && !memcmp(r->payload.data, text, strlen(text))) ok++;
    if (r) bench__v1__echo_response__free_unpacked(r, NULL);
    qw_msg_free(m);
  }
  printf("followup stream=%u echo_ok=%d\n", s->id, ok);
  printf("followup status %d %s\n", s->status.code, s->status.message);
  int good = s->status.code == QW_OK && ok == 1;
  qw_stream_free(s);
  return good ? 0 : -1;
}

static long parse_num(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == 0 || *end != 0 || v < 0) usage();
  return v;
}

int main(int argc, char **argv) {
  opts o;
  memset(&o, 0, sizeof o);
  o.payload_size = -1;
  o.messages = -1;
  o.cancel_after = -1;
  o.calls = 1;
  o.version = 1;
  o.stream_window = 262144;
  o.conn_window = 4194304;
  o.count = 1;
  int pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), ""))
    if (!strcmp(a, "--payload")) o.payload_text = NEXT();
    else if (!strcmp(a, "--payload-size")) o.payload_size = parse_num(NEXT());
    else if (!strcmp(a, "--count")) o.count = (unsigned)parse_num(NEXT());
    else if (!strcmp(a, "--messages")) o.messages = parse_num(NEXT());
    else if (!strcmp(a, "--gzip")) o.encoding = QW_ENC_GZIP;
    else if (!strcmp(a, "--deflate")) o.encoding = QW_ENC_DEFLATE;
    else if (!strcmp(a, "--timeout-ms")) o.timeout_ms = parse_num(NEXT());
    else if (!strcmp(a, "--timer-grace-ms")) o.grace_ms = parse_num(NEXT());
    else if (!strcmp(a, "--cancel-after")) o.cancel_after = parse_num(NEXT());
    else if (!strcmp(a, "--followup")) o.followup = 1;
    else if (!strcmp(a, "--service")) o.service = NEXT();
    else if (!strcmp(a, "--separate-eos")) o.separate_eos = 1;
    else if (!strcmp(a, "--calls")) o.calls = (int)parse_num(NEXT());
    else if (!strcmp(a, "--ping")) o.ping = 1;
    else if (!strcmp(a, "--summary")) o.summary = 1;
    else if (!strcmp(a, "--stream-window")) o.stream_window = (uint32_t)parse_num(NEXT());
    else if (!strcmp(a, "--conn-window")) o.conn_window = (uint32_t)parse_num(NEXT());
    else if (!strcmp(a, "--version")) o.version = (uint16_t)parse_num(NEXT());
    else if (!strcmp(a, "--metadata")) {
      const char *kv = NEXT();
      const char *eq = strchr(kv, '=');
      if (!eq || o.n_md >= 16) usage();
      qw_md *m = &o.md[o.n_md++];
      m->key = strndup(kv, (size_t)(eq - kv));
      size_t klen = strlen(m->key);
      m->binary = klen >= 4 && !strcmp(m->key + klen - 4, "-bin");
      const char *v = eq + 1;
      if (m->binary) {
        size_t vl = strlen(v);
        if (vl % 2) usage();
        m->value = malloc(vl / 2 + 1);
        for (size_t k = 0; k < vl / 2; k++) {
          int hi = hexval(v[2 * k]), lo = hexval(v[2 * k + 1]);
          if (hi < 0 || lo < 0) usage();
          m->value[k] = (uint8_t)(hi * 16 + lo);
        }
        m->len = vl / 2;
      } else {
        m->value = (uint8_t *)strdup(v);
        m->len = strlen(v);
      }
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage();
    else if (a[0] == '-' && a[1] == '-') usage();
    else if (pos == 0) {
      o.addr = a;
      pos++;
    } else if (pos == 1) {
      o.method = a[0] == '/' ? a + 1 : a;
      pos++;
    } else usage();
  }
  if (pos != 2 || o.stream_window < 65536 || o.conn_window < 65536 || o.stream_window > 2147483647u ||
      o.conn_window > 2147483647u)
    usage();
  if (o.cancel_after >= 0) o.followup = 1;

  qw_config cfg;
  qw_config_default(&cfg);
  cfg.stream_window = o.stream_window;
  cfg.conn_window = o.conn_window;
  cfg.version = o.version;
  qw_status st;
  int rc;
  qw_conn *c = qw_connect(o.addr, &cfg, &st);
  if (!c) {
    printf("connect failed\n");
    printf("status %d %s\n", st.code, st.message);
    printf("status_source %s\n", st.source ? st.source : "connection");
    qw_status_clear(&st);
    rc = EXIT_CONNECT;
    goto out;
  }
  printf("connected version=%u max_frame_size=%u initial_stream_window=%u "
         "initial_connection_window=%u max_concurrent_streams=%u max_header_list_size=%u "
         "max_message_size=%u accept_encodings=%u\n",
         c->peer_version, c->peer.v[1], c->peer.v[2], c->peer.v[3], c->peer.v[4], c->peer.v[5],
         c->peer.v[6], c->peer.v[7]);
  if (o.ping) {
    int64_t rtt;
    if (qw_ping(c, 5000, &rtt) == 0)
      printf("ping ok rtt_us=%lld\n", (long long)rtt);
    else
      printf("ping failed\n");
  }
  int code = 0;
  for (int k = 0; k < o.calls; k++) {
    code = do_call(&o, c);
    if (code < 0) break;
  }
  if (code < 0) {
    rc = EXIT_CONNECTION;
  } else {
    rc = code;
    if (o.followup && !c->dead && followup(c) < 0) {
      checks_failed++;
      printf("check-failed followup after the call\n");
    }
  }
  if (c->goaway_received)
    printf("goaway last_stream_id=%u code=%s debug=%s\n", c->goaway_last_id,
           qw_error_code_name(c->goaway_code), c->goaway_debug ? c->goaway_debug : "");
  printf("connection pings_answered=%llu conn_window_updates_sent=%llu\n",
         (unsigned long long)c->pings_answered, (unsigned long long)c->conn_window_updates_sent);
  qw_close(c);
  if (checks_failed && rc >= 0 && rc < 100) rc = EXIT_CHECK;
out:
  for (size_t i = 0; i < o.n_md; i++) {
    free(o.md[i].key);
    free(o.md[i].value);
  }
  fflush(stdout);
  return rc;
}
