/*
 * util.h - small helpers every part of the backend uses: logging, the
 * kernel's random source, UUIDs, time, strict number parsing, name
 * characters, small files and unix sockets.
 */
#ifndef PICO_UTIL_H
#define PICO_UTIL_H

#include <stddef.h>

/* One line per event on stderr, prefixed with a UTC timestamp. */
void log_msg(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_info(...) log_msg("info", __VA_ARGS__)
#define log_warn(...) log_msg("warn", __VA_ARGS__)
#define log_error(...) log_msg("error", __VA_ARGS__)

/* Fills buf from getrandom(); 0 or -1. */
int random_bytes(void *buf, size_t len);

/* A version 4 UUID in canonical lowercase text (36 chars + NUL). */
int uuid_v4(char out[37]);
/* 1 when s is exactly a canonical lowercase UUID, 0 otherwise. */
int uuid_valid(const char *s);

long long now_ms(void);
long long now_s(void);
/* CLOCK_MONOTONIC in ms: for deadlines, which must not jump with the
 * wall clock. */
long long mono_ms(void);
/* Unix seconds -> "2025-10-24T03:45:00Z"; out needs 21 bytes. -1 when the
 * time does not fit a four-digit year. */
int format_rfc3339(long long t, char *out, size_t outlen);

/* Lowercase hex of len bytes; out needs 2 * len + 1. */
void hex_encode(const unsigned char *in, size_t len, char *out);

/* Strict base-10 integer: optional '-', digits only, no spaces, no
 * overflow. 0 or -1. */
int parse_ll(const char *s, long long *out);

/* Copies src into dst (size dstlen), always NUL-terminated; -1 when it had
 * to truncate. */
int copy_str(char *dst, size_t dstlen, const char *src);

/* 1 when each of the n bytes of s is one of [A-Za-z0-9_.-] (a metadata
 * key, a token's principal, a pool sandbox's name); 0 otherwise. */
int name_chars_valid(const char *s, size_t n);

/* Reads a small file: one read() of up to len - 1 bytes of path, opened
 * O_RDONLY | O_CLOEXEC | flags (e.g. O_NOFOLLOW), NUL-terminated in buf.
 * Returns the number of bytes read, or 0 when the file cannot be opened
 * or read, or is empty. */
int read_small_file(const char *path, int flags, char *buf, size_t len);

/* A unix stream socket (close-on-exec, plus type_flags such as
 * SOCK_NONBLOCK) connected to path: the fd, or -1 with errno set. */
int unix_connect(const char *path, int type_flags);

/* A unix stream socket (close-on-exec) bound to path, not yet listening,
 * so its owner and mode can be set before anyone can connect. The fd, or
 * -1 with errno set (ENAMETOOLONG: path does not fit a socket address). */
int unix_bind(const char *path);

#endif
