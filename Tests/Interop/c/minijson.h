/* A minimal JSON reader for vectors.json (test code only): objects, arrays, strings with
 * escapes (\uXXXX incl. surrogate pairs, emitted as UTF-8), numbers, true/false/null. */
#ifndef MINIJSON_H
#define MINIJSON_H
#include <stddef.h>

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jval {
  jtype type;
  int b;
  double num;
  char *str;            /* J_STR (NUL-terminated UTF-8) */
  size_t str_len;
  struct jval **items;  /* J_ARR: values; J_OBJ: values */
  char **keys;          /* J_OBJ */
  size_t n;
} jval;

jval *json_parse(const char *text, size_t len, char *err, size_t errlen);
void json_free(jval *v);
const jval *json_get(const jval *obj, const char *key); /* NULL if absent or not an object */
const char *json_str(const jval *v);                     /* NULL unless a string */
int json_is_null(const jval *v);

#endif
