/* libFuzzer harness: test-tunnel's Go-style command line (flags_parse in
 * test-tunnel/flags.c). The input is the argument list, NUL-separated,
 * after argv[0]; what flags_parse prints goes to a memory stream.
 *
 * Checked: a command line it accepts has a -session, a timeout in range,
 * not both -stdio and -fdpass, and transfers split at their first colon
 * into two non-empty sides; every string option is a default or points
 * into argv. An accepted line prints nothing; a refused one says why.
 * flags_free releases everything in every case (LeakSanitizer). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"

#define ARGS_MAX 64

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Points into one of the arguments (at its start or after "-name="). */
static int from_argv(const char *s, char **argv, int argc)
{
    int i;

    for (i = 1; i < argc; i++)
        if (s >= argv[i] && s <= argv[i] + strlen(argv[i]))
            return 1;
    return 0;
}

static int option_ok(const char *s, const char *def, char **argv, int argc)
{
    return s != NULL &&
           ((def != NULL && strcmp(s, def) == 0) || from_argv(s, argv, argc));
}

static void check_transfers(const struct transfer *t, size_t n, int upload)
{
    size_t i;

    for (i = 0; i < n; i++) {
        check(t[i].local[0] != '\0' && t[i].remote[0] != '\0');
        /* the first colon splits the spec: none in its first side */
        check(strchr(upload ? t[i].local : t[i].remote, ':') == NULL);
    }
}

static void check_accepted(const struct options *o, char **argv, int argc)
{
    check(o->session != NULL && o->session[0] != '\0' &&
          from_argv(o->session, argv, argc));
    check(option_ok(o->api, "http://localhost:8080", argv, argc));
    check(option_ok(o->token, "", argv, argc));
    check(option_ok(o->user, "sandbox", argv, argc));
    check(option_ok(o->password, "sandbox", argv, argc));
    check(option_ok(o->cmd, "echo 'Hello from sandbox'", argv, argc));
    check(o->cacert == NULL || from_argv(o->cacert, argv, argc));
    check(o->timeout >= 0 && o->timeout <= 86400);
    check((o->stdio == 0 || o->stdio == 1) &&
          (o->fdpass == 0 || o->fdpass == 1));
    check(!(o->stdio && o->fdpass));
    check(o->nuploads + o->ndownloads < (size_t)argc);
    check_transfers(o->uploads, o->nuploads, 1);
    check_transfers(o->downloads, o->ndownloads, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *argv[ARGS_MAX + 2], *out = NULL;
    size_t start = 0, i, outlen = 0;
    struct options o;
    FILE *saved = stderr;
    int argc = 1, rc;

    argv[0] = strdup("test-tunnel");
    if (argv[0] == NULL)
        return 0;
    /* each argument its own allocation, so ASan sees reads past its end */
    for (i = 0; i <= size && argc <= ARGS_MAX; i++) {
        if (i < size && data[i] != '\0')
            continue;
        argv[argc] = strndup((const char *)data + start, i - start);
        if (argv[argc] == NULL)
            abort();
        argc++;
        start = i + 1;
    }
    argv[argc] = NULL;

    /* glibc's stderr is a plain variable; sanitizer and libFuzzer reports
     * are written to file descriptor 2 directly and still show. */
    stderr = open_memstream(&out, &outlen);
    if (stderr == NULL)
        abort();
    rc = flags_parse(&o, argc, argv);
    if (fclose(stderr) != 0)
        abort();
    stderr = saved;

    if (rc == FLAGS_OK) {
        check(outlen == 0);
        check_accepted(&o, argv, argc);
    } else {
        check(rc == FLAGS_HELP || rc == FLAGS_USAGE);
        check(outlen > 0 && strstr(out, "Usage of test-tunnel:") != NULL);
    }
    flags_free(&o);
    check(o.uploads == NULL && o.downloads == NULL);

    free(out);
    for (i = 0; i < (size_t)argc; i++)
        free(argv[i]);
    return 0;
}
