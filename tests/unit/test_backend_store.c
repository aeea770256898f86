/* Unit tests of backend/store/store.c against a real redis-server (a
 * private one on a unix socket in a temporary folder): the create script
 * is safe to retry, since run() sends it again when a pooled connection
 * broke and the first attempt may have been written already. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/util.h"
#include "store/command.h"
#include "store/store.h"

static char dir[] = "/tmp/pico-store-test.XXXXXX";
static char sock[256];
static pid_t redis_pid;
static store *st;

static int setup(void **state)
{
    char err[256], addr[300];
    int i;

    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
    redis_pid = fork();
    if (redis_pid == 0) {
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket",
               sock, "--save", "", "--appendonly", "no", "--dir", dir,
               "--logfile", "/dev/null", (char *)NULL);
        _exit(127);
    }
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    for (i = 0; i < 200 && access(sock, F_OK) < 0; i++)
        usleep(10000);
    st = store_open(addr, err, sizeof(err));
    return st != NULL && store_ping(st, err, sizeof(err)) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    store_close(st);
    kill(redis_pid, SIGTERM);
    (void)waitpid(redis_pid, NULL, 0);
    unlink(sock);
    rmdir(dir);
    return 0;
}

static void new_session(session *s)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(uuid_v4(s->id), 0);
    s->status = SESSION_PENDING;
    copy_str(s->image, sizeof(s->image), "sandbox:latest");
    s->ttl = 600;
    s->created_at = now_s();
    s->expires_at = s->created_at + s->ttl;
    snprintf(s->sandbox_name, sizeof(s->sandbox_name), "sandbox-%s", s->id);
}

/* The same create sent twice (its first reply lost) succeeds twice and
 * leaves one record, even when that record filled the last slot. */
static void test_create_retried_succeeds(void **state)
{
    session s;
    session_record rec;

    new_session(&s);
    assert_int_equal(store_session_create(st, &s, "local", "a", 1), 1);
    assert_int_equal(store_session_create(st, &s, "local", "a", 1), 1);
    assert_int_equal(store_session_get(st, s.id, &rec), 1);
    assert_string_equal(rec.s.id, s.id);
    session_free(&rec.s);
    /* a different session still meets the limit */
    {
        session other;
        new_session(&other);
        assert_int_equal(store_session_create(st, &other, "local", "a", 1), 0);
    }
    assert_int_equal(store_session_claim(st, s.id, 30000), 1);
    assert_int_equal(store_session_remove(st, s.id), 0);
}

/* pending -> running sent twice: the second finds its own values and
 * succeeds; a record that moved on elsewhere (claimed) does not. */
static void test_update_if_retried_succeeds(void **state)
{
    const char *pairs[] = {"status", "running", "endpoint", "unix:/x"};
    session s;

    new_session(&s);
    assert_int_equal(store_session_create(st, &s, "local", "a", 10), 1);
    assert_int_equal(store_session_update_if(st, s.id, "pending", pairs, 2), 1);
    assert_int_equal(store_session_update_if(st, s.id, "pending", pairs, 2), 1);
    assert_int_equal(store_session_claim(st, s.id, 30000), 1);
    assert_int_equal(store_session_update_if(st, s.id, "pending", pairs, 2), 0);
    assert_int_equal(store_session_remove(st, s.id), 0);
    assert_int_equal(store_session_update_if(st, s.id, "pending", pairs, 2), 0);
}

static long long stream_len(const char *principal)
{
    char key[128];
    const char *argv[] = {"XLEN", key};

    snprintf(key, sizeof(key), "pico:stream:%s", principal);
    return store_reply_int(store_command(st, 2, argv));
}

/* A transition writes its fields and its event once; sent again (its
 * first reply lost) it succeeds without a second event; from a status it
 * does not start from it changes nothing. */
static void test_transition_retried_adds_one_event(void **state)
{
    const char *pairs[] = {"status", "running", "endpoint", "unix:/x"};
    session s;
    long long before;

    new_session(&s);
    copy_str(s.owner, sizeof(s.owner), "alice");
    assert_int_equal(store_session_create(st, &s, "local", "a", 10), 1);
    before = stream_len("alice");
    assert_int_equal(
        store_session_transition(st, s.id, "pending", "running", pairs, 2), 1);
    assert_int_equal(stream_len("alice"), before + 1);
    assert_int_equal(
        store_session_transition(st, s.id, "pending", "running", pairs, 2), 1);
    assert_int_equal(stream_len("alice"), before + 1);
    {
        const char *other[] = {"status", "paused"};
        assert_int_equal(
            store_session_transition(st, s.id, "pending", "paused", other, 1),
            0);
    }
    assert_int_equal(stream_len("alice"), before + 1);
    assert_int_equal(store_session_claim(st, s.id, 30000), 1);
    assert_int_equal(store_session_remove(st, s.id), 0);
    assert_int_equal(
        store_session_transition(st, s.id, "pending", "running", pairs, 2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_retried_succeeds),
        cmocka_unit_test(test_update_if_retried_succeeds),
        cmocka_unit_test(test_transition_retried_adds_one_event),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
