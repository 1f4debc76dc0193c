/*
 * The configuration files of the `synesis` command (/etc/synesis/agent.conf, edge.conf): one
 * "key = value" per line, '#' comments, typed and bounded values, and the same keys as command-line
 * flags (--key-name for key_name). A table of conf_key entries describes the keys of one settings
 * struct; every value goes through conf_set(), whether it comes from a file or from a flag, so both
 * accept and refuse exactly the same things.
 *
 * File format (docs/synesis.md, `synesis help config`):
 *   - one setting per line: KEY = VALUE (blanks around '=' and at both ends are ignored);
 *   - blank lines are ignored; '#' starts a comment at the start of a line or after a blank;
 *   - a value in double quotes keeps its blanks and '#' characters (no escapes);
 *   - a key may appear once per file; an unknown key is an error;
 *   - lines of at most CONF_MAX_LINE bytes, files of at most CONF_MAX_FILE bytes, UTF-8 or ASCII
 *     (a leading byte-order mark and CRLF line ends are accepted).
 */
#ifndef SYNESIS_CLI_CONF_H
#define SYNESIS_CLI_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONF_MAX_LINE 4096
#define CONF_MAX_FILE (1024 * 1024)
#define CONF_MAX_KEYS 64

typedef enum conf_type {
    CONF_STRING,  /* char * (owned: malloc'ed, freed by conf_free) */
    CONF_SECONDS, /* double: seconds, fractions allowed, suffix ms, s, m or h */
    CONF_NUMBER,  /* double: a plain decimal number */
    CONF_BYTES,   /* uint64_t: bytes, suffix K, M or G (powers of 1024) */
    CONF_COUNT,   /* uint64_t: a whole number */
    CONF_BOOL,    /* int: yes/no, true/false, on/off, 1/0 */
    CONF_CHOICE,  /* int: the index of the value in choices */
} conf_type;

typedef struct conf_key {
    const char *name; /* in the file; the flag is --name with '-' for '_' */
    conf_type type;
    size_t offset; /* of the field in the settings struct */
    /* CONF_SECONDS, CONF_NUMBER: inclusive bounds. */
    double min, max;
    /* CONF_BYTES, CONF_COUNT: inclusive bounds; zero_ok also accepts 0 below umin. */
    uint64_t umin, umax;
    int zero_ok;
    /* Numbers: a word that stands for the value word_value (e.g. "unlimited", "never"). */
    const char *word;
    uint64_t word_value;
    const char *const *choices; /* CONF_CHOICE: NULL-terminated */
    const char *metavar;        /* "URL", "FILE", "S", "BYTES", ... */
    const char *help;           /* for --help; lines separated by '\n' */
    const char *alias;          /* another flag name (without "--"), or NULL */
    /* CONF_STRING: an extra check of the value; returns 0, or -1 with why in err. */
    int (*check)(const char *value, char *err, size_t errlen);
} conf_key;

/* A table of keys. */
typedef struct conf_table {
    const conf_key *keys;
    size_t n;
} conf_table;

/* The key named name (file spelling, '_'), or NULL. */
const conf_key *conf_find(const conf_table *t, const char *name);

/* Sets key k of the settings at dst from text. On a bad value writes why into err ("wants ...,
 * not 'x'"), leaves the field as it was and returns -1; else 0. */
int conf_set(const conf_key *k, void *dst, const char *text, char *err, size_t errlen);

/* Parses a whole file's text (len bytes, need not be NUL-terminated) into dst. name is what
 * messages call the file. Returns 0, or -1 with "NAME:LINE: ..." in err. Keys set before the
 * error stay set. */
int conf_parse(const conf_table *t, void *dst, const char *name, const char *text, size_t len,
               char *err, size_t errlen);

/* Reads the file at path and parses it. Returns 0; 1 when the file does not exist and missing_ok
 * (nothing set); -1 with the reason (naming the file) in err. */
int conf_load(const conf_table *t, void *dst, const char *path, int missing_ok, char *err,
              size_t errlen);

/* Writes the value of k in src as the file would spell it into out (a string that needs them is
 * quoted). Returns 0, or -1 when a string key is unset (out gets ""). */
int conf_format(const conf_key *k, const void *src, char *out, size_t len);

/* Frees the strings of dst and sets them to NULL. */
void conf_free(const conf_table *t, void *dst);

/* Replaces string key k's value with a copy of value (NULL unsets it). Returns 0 or -1 (out of
 * memory). */
int conf_set_string(const conf_key *k, void *dst, const char *value);

/* Prints the keys as command-line options for --help, with the defaults found in defaults. */
void conf_print_help(FILE *f, const conf_table *t, const void *defaults);

/* Prints every key that has a value as "key = value" lines (a file that conf_parse accepts). */
void conf_print_values(FILE *f, const conf_table *t, const void *src);

/* The closest key to name (for "did you mean"), or NULL when none is close. */
const conf_key *conf_suggest(const conf_table *t, const char *name);

#endif /* SYNESIS_CLI_CONF_H */
