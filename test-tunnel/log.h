/*
 * log.h - Go-style timestamped log lines for test-tunnel.
 *
 * The user's guide shows progress as "2025/10/24 03:45:00 message", the
 * format of Go's log package. Progress goes to stderr, results to stdout,
 * so `test-tunnel ... > out` keeps only the command's output block.
 */
#ifndef TT_LOG_H
#define TT_LOG_H

/* Silences logln() (the -stdio mode, where stdout carries the tunnel). */
void log_set_quiet(int quiet);

/* "YYYY/MM/DD HH:MM:SS <message>\n" on stderr, after flushing stdout. */
void logln(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "Error: <message>\n" on stderr; always printed, even when quiet. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
