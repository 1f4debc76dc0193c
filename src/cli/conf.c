/* The configuration files and flags of the `synesis` command (see conf.h). */
#include "conf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static void fmt(char *err, size_t errlen, const char *f, ...) __attribute__((format(printf, 3, 4)));

static void fmt(char *err, size_t errlen, const char *f, ...) {
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(err, errlen, f, ap);
    va_end(ap);
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

static void *field(void *dst, const conf_key *k) { return (char *)dst + k->offset; }
static const void *cfield(const void *src, const conf_key *k) {
    return (const char *)src + k->offset;
}

const conf_key *conf_find(const conf_table *t, const char *name) {
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->keys[i].name, name) == 0)
            return &t->keys[i];
    return NULL;
}

/* Shortest decimal spelling of v that reads back as v. */
static void num_text(double v, char *out, size_t len) {
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, len, "%.0f", v);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(out, len, "%.*g", p, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* A decimal number at the start of text: digits with at most one '.', at least one digit, an
 * optional exponent. No sign, "inf", "nan" or hex (strtod would take them). Returns the end. */
static const char *decimal_end(const char *s) {
    const char *p = s;
    int digits = 0, dots = 0;
    for (; (*p >= '0' && *p <= '9') || *p == '.'; p++) {
        if (*p == '.')
            dots++;
        else
            digits++;
    }
    if (!digits || dots > 1)
        return NULL;
    if (*p == 'e' || *p == 'E') {
        const char *q = p + 1 + (p[1] == '-' || p[1] == '+');
        if (*q >= '0' && *q <= '9') {
            while (*q >= '0' && *q <= '9')
                q++;
            p = q;
        }
    }
    return p;
}

/* Parses a decimal number (see decimal_end) followed by blanks and *suffix_out. */
static int parse_decimal(const char *text, double *v, const char **suffix_out) {
    const char *end = decimal_end(text);
    if (!end)
        return -1;
    char buf[64];
    if ((size_t)(end - text) >= sizeof(buf))
        return -1;
    memcpy(buf, text, (size_t)(end - text));
    buf[end - text] = 0;
    errno = 0;
    char *e;
    *v = strtod(buf, &e);
    if (errno || *e || !isfinite(*v))
        return -1;
    while (is_blank(*end))
        end++;
    *suffix_out = end;
    return 0;
}

/* A whole decimal number, then blanks and *suffix_out. */
static int parse_whole(const char *text, uint64_t *v, const char **suffix_out) {
    if (!(*text >= '0' && *text <= '9'))
        return -1;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(text, &end, 10);
    if (errno)
        return -1;
    *v = x;
    while (is_blank(*end))
        end++;
    *suffix_out = end;
    return 0;
}

static int word_match(const conf_key *k, const char *text) {
    return k->word && strcmp(text, k->word) == 0;
}

static void word_hint(const conf_key *k, char *out, size_t len) {
    if (k->word)
        snprintf(out, len, ", or '%s'", k->word);
    else
        out[0] = 0;
}

static int set_seconds_or_number(const conf_key *k, void *dst, const char *text, char *err,
                                 size_t errlen) {
    double v, mult = 1;
    const char *suffix;
    char lo[32], hi[32], w[64];
    num_text(k->min, lo, sizeof(lo));
    num_text(k->max, hi, sizeof(hi));
    word_hint(k, w, sizeof(w));
    if (word_match(k, text)) {
        *(double *)field(dst, k) = (double)k->word_value;
        return 0;
    }
    int ok = parse_decimal(text, &v, &suffix) == 0;
    if (ok && k->type == CONF_SECONDS) {
        if (!*suffix || strcmp(suffix, "s") == 0)
            mult = 1;
        else if (strcmp(suffix, "ms") == 0)
            mult = 0.001;
        else if (strcmp(suffix, "m") == 0 || strcmp(suffix, "min") == 0)
            mult = 60;
        else if (strcmp(suffix, "h") == 0)
            mult = 3600;
        else
            ok = 0;
    } else if (ok && *suffix) {
        ok = 0;
    }
    v *= mult;
    if (!ok || !isfinite(v) || v < k->min || v > k->max) {
        if (k->type == CONF_SECONDS)
            fmt(err, errlen,
                "wants seconds from %s to %s (a number, optionally with ms, s, m or h)%s, not "
                "'%.64s'",
                lo, hi, w, text);
        else
            fmt(err, errlen, "wants a number from %s to %s%s, not '%.64s'", lo, hi, w, text);
        return -1;
    }
    *(double *)field(dst, k) = v;
    return 0;
}

static int set_whole(const conf_key *k, void *dst, const char *text, char *err, size_t errlen) {
    uint64_t v, mult = 1;
    const char *suffix;
    char w[64];
    word_hint(k, w, sizeof(w));
    if (word_match(k, text)) {
        *(uint64_t *)field(dst, k) = k->word_value;
        return 0;
    }
    int ok = parse_whole(text, &v, &suffix) == 0;
    if (ok && k->type == CONF_BYTES && *suffix) {
        if (strcasecmp(suffix, "K") == 0 || strcmp(suffix, "KiB") == 0)
            mult = 1024;
        else if (strcmp(suffix, "M") == 0 || strcmp(suffix, "MiB") == 0)
            mult = 1024 * 1024;
        else if (strcmp(suffix, "G") == 0 || strcmp(suffix, "GiB") == 0)
            mult = 1024 * 1024 * 1024;
        else
            ok = 0;
    } else if (ok && *suffix) {
        ok = 0;
    }
    if (ok && mult > 1 && v > UINT64_MAX / mult)
        ok = 0;
    if (ok)
        v *= mult;
    if (!ok || ((v < k->umin || v > k->umax) && !(v == 0 && k->zero_ok))) {
        char zero[8] = "";
        if (k->zero_ok && k->umin > 0)
            snprintf(zero, sizeof(zero), "0 or ");
        if (k->type == CONF_BYTES)
            fmt(err, errlen,
                "wants a byte count, %sfrom %llu to %llu (optionally with K, M or G)%s, not "
                "'%.64s'",
                zero, (unsigned long long)k->umin, (unsigned long long)k->umax, w, text);
        else
            fmt(err, errlen, "wants a whole number, %sfrom %llu to %llu%s, not '%.64s'", zero,
                (unsigned long long)k->umin, (unsigned long long)k->umax, w, text);
        return -1;
    }
    *(uint64_t *)field(dst, k) = v;
    return 0;
}

int conf_set_string(const conf_key *k, void *dst, const char *value) {
    char **slot = field(dst, k);
    char *copy = NULL;
    if (value && !(copy = strdup(value)))
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

int conf_set(const conf_key *k, void *dst, const char *text, char *err, size_t errlen) {
    switch (k->type) {
    case CONF_STRING:
        if (!text[0]) {
            fmt(err, errlen, "wants a value, not an empty string");
            return -1;
        }
        for (const char *p = text; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                fmt(err, errlen, "contains a control character");
                return -1;
            }
        if (k->check && k->check(text, err, errlen) != 0)
            return -1;
        if (conf_set_string(k, dst, text) != 0) {
            fmt(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    case CONF_SECONDS:
    case CONF_NUMBER:
        return set_seconds_or_number(k, dst, text, err, errlen);
    case CONF_BYTES:
    case CONF_COUNT:
        return set_whole(k, dst, text, err, errlen);
    case CONF_BOOL:
        if (!strcasecmp(text, "yes") || !strcasecmp(text, "true") || !strcasecmp(text, "on") ||
            !strcmp(text, "1")) {
            *(int *)field(dst, k) = 1;
            return 0;
        }
        if (!strcasecmp(text, "no") || !strcasecmp(text, "false") || !strcasecmp(text, "off") ||
            !strcmp(text, "0")) {
            *(int *)field(dst, k) = 0;
            return 0;
        }
        fmt(err, errlen, "wants yes or no, not '%.64s'", text);
        return -1;
    case CONF_CHOICE: {
        char list[256] = "";
        size_t used = 0;
        for (int i = 0; k->choices[i]; i++) {
            if (!strcasecmp(text, k->choices[i])) {
                *(int *)field(dst, k) = i;
                return 0;
            }
            int n =
                snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", k->choices[i]);
            if (n > 0 && (size_t)n < sizeof(list) - used)
                used += (size_t)n;
        }
        fmt(err, errlen, "wants one of %s, not '%.64s'", list, text);
        return -1;
    }
    }
    fmt(err, errlen, "has an unknown type");
    return -1;
}

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return (size_t)-1;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const conf_key *conf_suggest(const conf_table *t, const char *name) {
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof(norm))
        return NULL;
    for (size_t i = 0; i <= n; i++) /* "heartbeat-interval", "Heartbeat_Interval" */
        norm[i] = name[i] == '-'
                      ? '_'
                      : (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    const conf_key *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < t->n; i++) {
        size_t d = edit_distance(norm, t->keys[i].name);
        if (d < best_d) {
            best_d = d;
            best = &t->keys[i];
        }
    }
    size_t limit = n / 3 > 2 ? n / 3 : 2;
    return best && best_d <= limit ? best : NULL;
}

/* One line (NUL-terminated, no newline). Returns 0, or -1 with the message (after "NAME:LINE: ")
 * in err. */
static int parse_line(const conf_table *t, void *dst, char *line, unsigned lineno, unsigned *seen,
                      char *err, size_t errlen) {
    char *p = line;
    while (is_blank(*p))
        p++;
    if (!*p || *p == '#')
        return 0;
    char *key = p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '_' || *p == '-' || *p == '.')
        p++;
    char *key_end = p;
    while (is_blank(*p))
        p++;
    if (key_end == key || *p != '=') {
        fmt(err, errlen, "expected 'key = value', not '%.40s%s'", key,
            strlen(key) > 40 ? "..." : "");
        return -1;
    }
    *key_end = 0;
    p++;
    while (is_blank(*p))
        p++;
    char *value = p;
    if (*p == '"') {
        value = p + 1;
        char *close = strchr(value, '"');
        if (!close) {
            fmt(err, errlen, "%s: unterminated quote", key);
            return -1;
        }
        *close = 0;
        p = close + 1;
        while (is_blank(*p))
            p++;
        if (*p && *p != '#') {
            fmt(err, errlen, "%s: text after the closing quote: '%.40s'", key, p);
            return -1;
        }
    } else {
        char *end = p;
        for (; *end; end++)
            if (*end == '#' && (end == value || is_blank(end[-1])))
                break;
        *end = 0;
        while (end > value && is_blank(end[-1]))
            *--end = 0;
        if (!*value) {
            fmt(err, errlen, "%s: no value (leave the key out, or comment it out, for its default)",
                key);
            return -1;
        }
    }
    const conf_key *k = conf_find(t, key);
    if (!k) {
        const conf_key *near = conf_suggest(t, key);
        if (near)
            fmt(err, errlen, "unknown key '%s' (did you mean '%s'?)", key, near->name);
        else
            fmt(err, errlen, "unknown key '%s'", key);
        return -1;
    }
    size_t idx = (size_t)(k - t->keys);
    if (idx < CONF_MAX_KEYS && seen[idx]) {
        fmt(err, errlen, "%s: set twice (first on line %u)", key, seen[idx]);
        return -1;
    }
    char why[256];
    if (conf_set(k, dst, value, why, sizeof(why)) != 0) {
        fmt(err, errlen, "%s: %s", key, why);
        return -1;
    }
    if (idx < CONF_MAX_KEYS)
        seen[idx] = lineno;
    return 0;
}

int conf_parse(const conf_table *t, void *dst, const char *name, const char *text, size_t len,
               char *err, size_t errlen) {
    unsigned seen[CONF_MAX_KEYS] = {0};
    if (len > CONF_MAX_FILE) {
        fmt(err, errlen, "%s: larger than %d bytes", name, CONF_MAX_FILE);
        return -1;
    }
    size_t pos = 0;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        pos = 3; /* a UTF-8 byte-order mark */
    char line[CONF_MAX_LINE + 1];
    for (unsigned lineno = 1; pos < len; lineno++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = (nl ? (size_t)(nl - text) : len) - pos;
        if (n > CONF_MAX_LINE) {
            fmt(err, errlen, "%s:%u: line longer than %d bytes", name, lineno, CONF_MAX_LINE);
            return -1;
        }
        if (memchr(text + pos, 0, n)) {
            fmt(err, errlen, "%s:%u: NUL byte in the line", name, lineno);
            return -1;
        }
        memcpy(line, text + pos, n);
        line[n] = 0;
        if (n && line[n - 1] == '\r')
            line[n - 1] = 0;
        char why[512];
        if (parse_line(t, dst, line, lineno, seen, why, sizeof(why)) != 0) {
            fmt(err, errlen, "%s:%u: %s", name, lineno, why);
            return -1;
        }
        pos += n + 1;
    }
    return 0;
}

int conf_load(const conf_table *t, void *dst, const char *path, int missing_ok, char *err,
              size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && missing_ok)
            return 1;
        fmt(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int rv = -1;
    while (buf) {
        if (len == cap) {
            if (cap > CONF_MAX_FILE) {
                fmt(err, errlen, "%s: larger than %d bytes", path, CONF_MAX_FILE);
                goto out;
            }
            char *bigger = realloc(buf, cap * 2);
            if (!bigger)
                break;
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fmt(err, errlen, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) {
            rv = conf_parse(t, dst, path, buf, len, err, errlen);
            goto out;
        }
        len += (size_t)r;
    }
    fmt(err, errlen, "%s: out of memory", path);
out:
    free(buf);
    close(fd);
    return rv;
}

int conf_format(const conf_key *k, const void *src, char *out, size_t len) {
    const void *f = cfield(src, k);
    out[0] = 0;
    switch (k->type) {
    case CONF_STRING: {
        const char *s = *(char *const *)f;
        if (!s)
            return -1;
        size_t n = strlen(s);
        int quote = !n || is_blank(s[0]) || is_blank(s[n - 1]) || strchr(s, '#') || s[0] == '"';
        snprintf(out, len, quote ? "\"%s\"" : "%s", s);
        return 0;
    }
    case CONF_SECONDS:
    case CONF_NUMBER: {
        double v = *(const double *)f;
        if (k->word && v == (double)k->word_value)
            snprintf(out, len, "%s", k->word);
        else
            num_text(v, out, len);
        return 0;
    }
    case CONF_BYTES:
    case CONF_COUNT: {
        uint64_t v = *(const uint64_t *)f;
        static const char units[] = "GMK";
        if (k->word && v == k->word_value) {
            snprintf(out, len, "%s", k->word);
            return 0;
        }
        for (int i = 0; k->type == CONF_BYTES && v && i < 3; i++) {
            uint64_t unit = 1ull << (10 * (3 - i));
            if (v % unit == 0) {
                snprintf(out, len, "%llu%c", (unsigned long long)(v / unit), units[i]);
                return 0;
            }
        }
        snprintf(out, len, "%llu", (unsigned long long)v);
        return 0;
    }
    case CONF_BOOL:
        snprintf(out, len, "%s", *(const int *)f ? "yes" : "no");
        return 0;
    case CONF_CHOICE:
        snprintf(out, len, "%s", k->choices[*(const int *)f]);
        return 0;
    }
    return -1;
}

void conf_free(const conf_table *t, void *dst) {
    for (size_t i = 0; i < t->n; i++)
        if (t->keys[i].type == CONF_STRING) {
            char **slot = field(dst, &t->keys[i]);
            free(*slot);
            *slot = NULL;
        }
}

static void flag_name(const char *name, char *out, size_t len) {
    snprintf(out, len, "%s", name);
    for (char *p = out; *p; p++)
        if (*p == '_')
            *p = '-';
}

void conf_print_help(FILE *f, const conf_table *t, const void *defaults) {
    for (size_t i = 0; i < t->n; i++) {
        const conf_key *k = &t->keys[i];
        char flag[80], value[256];
        flag_name(k->name, flag, sizeof(flag));
        fprintf(f, "  --%s %s", flag, k->metavar);
        if (k->alias)
            fprintf(f, ", --%s %s", k->alias, k->metavar);
        if (defaults && conf_format(k, defaults, value, sizeof(value)) == 0)
            fprintf(f, "  (default %s)", value);
        fputc('\n', f);
        for (const char *line = k->help; line && *line;) {
            const char *nl = strchr(line, '\n');
            int n = nl ? (int)(nl - line) : (int)strlen(line);
            fprintf(f, "        %.*s\n", n, line);
            line = nl ? nl + 1 : line + n;
        }
    }
}

void conf_print_values(FILE *f, const conf_table *t, const void *src) {
    for (size_t i = 0; i < t->n; i++) {
        char value[CONF_MAX_LINE];
        if (conf_format(&t->keys[i], src, value, sizeof(value)) == 0)
            fprintf(f, "%s = %s\n", t->keys[i].name, value);
    }
}
