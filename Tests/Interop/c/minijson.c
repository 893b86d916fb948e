#include "minijson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *p, *end;
  char *err;
  size_t errlen;
  int failed;
} jp;

static void fail(jp *j, const char *msg) {
  if (!j->failed) snprintf(j->err, j->errlen, "%s at offset %ld", msg, (long)(j->end - j->p));
  j->failed = 1;
}

static void ws(jp *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static jval *newv(jtype t) {
  jval *v = calloc(1, sizeof *v);
  if (v) v->type = t;
  return v;
}

static jval *parse_value(jp *j, int depth);

static int hex4(jp *j, unsigned *out) {
  if (j->end - j->p < 4) return -1;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = j->p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  j->p += 4;
  *out = v;
  return 0;
}

static void put_utf8(char **o, unsigned cp) {
  char *q = *o;
  if (cp < 0x80) *q++ = (char)cp;
  else if (cp < 0x800) {
    *q++ = (char)(0xC0 | (cp >> 6));
    *q++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *q++ = (char)(0xE0 | (cp >> 12));
    *q++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *q++ = (char)(0x80 | (cp & 0x3F));
  } else {
    *q++ = (char)(0xF0 | (cp >> 18));
    *q++ = (char)(0x80 | ((cp >> 12) & 0x3F));
    *q++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *q++ = (char)(0x80 | (cp & 0x3F));
  }
  *o = q;
}

static char *parse_string(jp *j, size_t *len) {
  if (j->p >= j->end || *j->p != '"') {
    fail(j, "expected string");
    return NULL;
  }
  j->p++;
  const char *start = j->p;
  size_t max = 0;
  while (start + max < j->end && start[max] != '"') max += start[max] == '\\' ? 2 : 1;
  char *out = malloc(max * 2 + 1);
  char *o = out;
  while (j->p < j->end && *j->p != '"') {
    char c = *j->p++;
    if (c != '\\') {
      *o++ = c;
      continue;
    }
    if (j->p >= j->end) break;
    c = *j->p++;
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '/': *o++ = '/'; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u': {
      unsigned cp;
      if (hex4(j, &cp) < 0) {
        fail(j, "bad \\u escape");
        free(out);
        return NULL;
      }
      if (cp >= 0xD800 && cp <= 0xDBFF && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
        unsigned lo;
        j->p += 2;
        if (hex4(j, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF)
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      put_utf8(&o, cp);
      break;
    }
    default:
      fail(j, "bad escape");
      free(out);
      return NULL;
    }
  }
  if (j->p >= j->end) {
    fail(j, "unterminated string");
    free(out);
    return NULL;
  }
  j->p++;
  *o = 0;
  *len = (size_t)(o - out);
  return out;
}

static int push(jval *v, jval *item, char *key) {
  jval **ni = realloc(v->items, (v->n + 1) * sizeof *ni);
  if (!ni) return -1;
  v->items = ni;
  if (v->type == J_OBJ) {
    char **nk = realloc(v->keys, (v->n + 1) * sizeof *nk);
    if (!nk) return -1;
    v->keys = nk;
    v->keys[v->n] = key;
  }
  v->items[v->n++] = item;
  return 0;
}

static jval *parse_value(jp *j, int depth) {
  if (depth > 64) {
    fail(j, "too deep");
    return NULL;
  }
  ws(j);
  if (j->p >= j->end) {
    fail(j, "unexpected end");
    return NULL;
  }
  char c = *j->p;
  if (c == '{' || c == '[') {
    int obj = c == '{';
    jval *v = newv(obj ? J_OBJ : J_ARR);
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
      j->p++;
      return v;
    }
    for (;;) {
      char *key = NULL;
      if (obj) {
        ws(j);
        size_t kl;
        key = parse_string(j, &kl);
        if (!key) break;
        ws(j);
        if (j->p >= j->end || *j->p != ':') {
          fail(j, "expected ':'");
          free(key);
          break;
        }
        j->p++;
      }
      jval *item = parse_value(j, depth + 1);
      if (!item) {
        free(key);
        break;
      }
      push(v, item, key);
      ws(j);
      if (j->p < j->end && *j->p == ',') {
        j->p++;
        continue;
      }
      if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
        j->p++;
        return v;
      }
      fail(j, "expected ',' or end of container");
      break;
    }
    json_free(v);
    return NULL;
  }
  if (c == '"') {
    jval *v = newv(J_STR);
    v->str = parse_string(j, &v->str_len);
    if (!v->str) {
      free(v);
      return NULL;
    }
    return v;
  }
  if (j->end - j->p >= 4 && !strncmp(j->p, "true", 4)) {
    j->p += 4;
    jval *v = newv(J_BOOL);
    v->b = 1;
    return v;
  }
  if (j->end - j->p >= 5 && !strncmp(j->p, "false", 5)) {
    j->p += 5;
    return newv(J_BOOL);
  }
  if (j->end - j->p >= 4 && !strncmp(j->p, "null", 4)) {
    j->p += 4;
    return newv(J_NULL);
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    char buf[64];
    size_t k = 0;
    while (j->p < j->end && k < sizeof buf - 1 &&
           strchr("+-0123456789.eE", *j->p) != NULL)
      buf[k++] = *j->p++;
    buf[k] = 0;
    jval *v = newv(J_NUM);
    v->num = strtod(buf, NULL);
    return v;
  }
  fail(j, "unexpected character");
  return NULL;
}

jval *json_parse(const char *text, size_t len, char *err, size_t errlen) {
  jp j = {text, text + len, err, errlen, 0};
  jval *v = parse_value(&j, 0);
  if (v) {
    ws(&j);
    if (j.p != j.end) {
      fail(&j, "trailing data");
      json_free(v);
      return NULL;
    }
  }
  return v;
}

void json_free(jval *v) {
  if (!v) return;
  for (size_t i = 0; i < v->n; i++) {
    json_free(v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->str);
  free(v);
}

const jval *json_get(const jval *obj, const char *key) {
  if (!obj || obj->type != J_OBJ) return NULL;
  for (size_t i = 0; i < obj->n; i++)
    if (!strcmp(obj->keys[i], key)) return obj->items[i];
  return NULL;
}

const char *json_str(const jval *v) { return v && v->type == J_STR ? v->str : NULL; }
int json_is_null(const jval *v) { return !v || v->type == J_NULL; }
