/*
 * sftp.c - -upload and -download over SFTP through the tunnel.
 *
 * Files are streamed in fixed chunks, never held whole in memory, and a
 * transfer counts as done only when the size on the far side equals the
 * bytes sent. On a terminal a progress line shows how far large files got.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh/sftp.h>

#include "sftp.h"

/* Under the 32 KiB channel packet libssh uses, so one write = one packet. */
#define CHUNK 32768
#define PROGRESS_MIN (1024ULL * 1024)

struct progress {
    const char *verb;
    const char *name;
    unsigned long long total; /* 0 when unknown */
    int shown;
    int last_pct;
};

static void progress_init(struct progress *p, const char *verb,
                          const char *name, unsigned long long total)
{
    p->verb = verb;
    p->name = name;
    p->total = total;
    p->shown = total >= PROGRESS_MIN && isatty(STDERR_FILENO);
    p->last_pct = -1;
}

static void progress_update(struct progress *p, unsigned long long done)
{
    int pct;

    if (!p->shown)
        return;
    pct = (int)(done * 100 / p->total);
    if (pct == p->last_pct)
        return;
    p->last_pct = pct;
    fprintf(stderr, "\r%s %s: %.1f / %.1f MiB (%d%%)", p->verb, p->name,
            (double)done / 1048576.0, (double)p->total / 1048576.0, pct);
}

static void progress_end(struct progress *p)
{
    if (p->shown)
        fputc('\n', stderr);
}

static sftp_session sftp_start(ssh_session s, char *err, size_t errlen)
{
    sftp_session sf = sftp_new(s);

    if (sf == NULL) {
        snprintf(err, errlen, "sftp: %s", ssh_get_error(s));
        return NULL;
    }
    if (sftp_init(sf) != SSH_OK) {
        snprintf(err, errlen, "sftp: init failed (code %d): %s",
                 sftp_get_error(sf), ssh_get_error(s));
        sftp_free(sf);
        return NULL;
    }
    return sf;
}

/* Sends the open local file; returns bytes sent or -1 with err set. */
static long long upload_stream(int fd, sftp_file f, struct progress *p,
                               char *buf, char *err, size_t errlen)
{
    unsigned long long done = 0;

    for (;;) {
        ssize_t n = read(fd, buf, CHUNK), off = 0;

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "read: %s", strerror(errno));
            return -1;
        }
        if (n == 0)
            return (long long)done;
        while (off < n) {
            ssize_t w = sftp_write(f, buf + off, (size_t)(n - off));

            if (w <= 0) {
                snprintf(err, errlen, "sftp write failed");
                return -1;
            }
            off += w;
        }
        done += (unsigned long long)n;
        progress_update(p, done);
    }
}

/* What one transfer holds open; transfer_end releases whatever is set. */
struct transfer {
    sftp_session sf;
    sftp_file f;
    sftp_attributes at;
    char *buf;
    int fd;
};

static void transfer_end(struct transfer *t)
{
    if (t->at)
        sftp_attributes_free(t->at);
    if (t->f)
        sftp_close(t->f);
    if (t->sf)
        sftp_free(t->sf);
    free(t->buf);
    if (t->fd >= 0)
        close(t->fd);
}

int sftp_upload(ssh_session s, const char *local, const char *remote,
                unsigned long long *bytes, char *err, size_t errlen)
{
    struct transfer t = {.fd = -1};
    struct progress p;
    struct stat st;
    long long sent = -1;
    int rc = -1;

    t.fd = open(local, O_RDONLY | O_CLOEXEC);
    if (t.fd < 0 || fstat(t.fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: %s", local,
                 t.fd < 0 ? strerror(errno) : "not a regular file");
        goto out;
    }
    t.buf = malloc(CHUNK);
    t.sf = sftp_start(s, err, errlen);
    if (t.buf == NULL || t.sf == NULL)
        goto out;
    t.f = sftp_open(t.sf, remote, O_WRONLY | O_CREAT | O_TRUNC,
                    st.st_mode & 0777);
    if (t.f == NULL) {
        snprintf(err, errlen, "%s: %s", remote, ssh_get_error(s));
        goto out;
    }
    progress_init(&p, "Uploading", local, (unsigned long long)st.st_size);
    sent = upload_stream(t.fd, t.f, &p, t.buf, err, errlen);
    progress_end(&p);
    if (sent < 0)
        goto out;
    if (sftp_close(t.f) != SSH_OK) {
        t.f = NULL;
        snprintf(err, errlen, "%s: close: %s", remote, ssh_get_error(s));
        goto out;
    }
    t.f = NULL;
    t.at = sftp_stat(t.sf, remote);
    if (t.at == NULL || t.at->size != (unsigned long long)sent) {
        snprintf(err, errlen,
                 "%s: size check failed: sent %lld bytes, "
                 "sandbox has %lld",
                 remote, sent, t.at ? (long long)t.at->size : -1LL);
        goto out;
    }
    *bytes = (unsigned long long)sent;
    rc = 0;

out:
    transfer_end(&t);
    return rc;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Receives the remote file into fd; bytes received or -1 with err set. */
static long long download_stream(sftp_file f, int fd, struct progress *p,
                                 char *buf, char *err, size_t errlen)
{
    unsigned long long done = 0;

    for (;;) {
        ssize_t n = sftp_read(f, buf, CHUNK);

        if (n < 0) {
            snprintf(err, errlen, "sftp read failed");
            return -1;
        }
        if (n == 0)
            return (long long)done;
        if (write_all(fd, buf, (size_t)n) < 0) {
            snprintf(err, errlen, "write: %s", strerror(errno));
            return -1;
        }
        done += (unsigned long long)n;
        progress_update(p, done);
    }
}

int sftp_download(ssh_session s, const char *remote, const char *local,
                  unsigned long long *bytes, char *err, size_t errlen)
{
    struct transfer t = {.fd = -1, .buf = malloc(CHUNK)};
    struct progress p;
    long long got = -1;
    int rc = -1;

    t.sf = sftp_start(s, err, errlen);
    if (t.buf == NULL || t.sf == NULL)
        goto out;
    t.f = sftp_open(t.sf, remote, O_RDONLY, 0);
    t.at = t.f ? sftp_fstat(t.f) : NULL;
    if (t.f == NULL || t.at == NULL) {
        snprintf(err, errlen, "%s: %s", remote, ssh_get_error(s));
        goto out;
    }
    t.fd = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (t.fd < 0) {
        snprintf(err, errlen, "%s: %s", local, strerror(errno));
        goto out;
    }
    progress_init(&p, "Downloading", remote, t.at->size);
    got = download_stream(t.f, t.fd, &p, t.buf, err, errlen);
    progress_end(&p);
    if (got < 0)
        goto out;
    if ((unsigned long long)got != t.at->size) {
        snprintf(err, errlen,
                 "%s: size check failed: sandbox has %llu "
                 "bytes, received %lld",
                 remote, (unsigned long long)t.at->size, got);
        goto out;
    }
    if (close(t.fd) < 0) {
        t.fd = -1;
        snprintf(err, errlen, "%s: %s", local, strerror(errno));
        goto out;
    }
    t.fd = -1;
    *bytes = (unsigned long long)got;
    rc = 0;

out:
    transfer_end(&t);
    return rc;
}
