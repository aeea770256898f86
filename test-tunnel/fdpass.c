/*
 * fdpass.c - hands the tunnel's socket to OpenSSH.
 *
 * With ProxyUseFdpass=yes, ssh runs the ProxyCommand with a unix socket as
 * its stdout and waits for one descriptor on it (SCM_RIGHTS with one byte
 * of data), then speaks SSH on that descriptor itself. Compared with
 * -stdio this removes a relay process and two copies of every byte on the
 * client's side. The CONNECT answer was read up to its blank line and not
 * a byte further (connect.c), so sshd's banner is still in the socket for
 * ssh to read.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "fdpass.h"

int fdpass_send(int to, int sock, char *err, size_t errlen)
{
    char byte = 0;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr msg;
    struct cmsghdr *cmsg;
    struct stat st;
    ssize_t n;

    if (fstat(to, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        (void)snprintf(err, errlen,
                       "-fdpass: stdout is not a socket (use it as ssh's "
                       "ProxyCommand with -o ProxyUseFdpass=yes)");
        return -1;
    }
    memset(&msg, 0, sizeof(msg));
    memset(&ctl, 0, sizeof(ctl));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &sock, sizeof(int));

    do {
        n = sendmsg(to, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
        (void)snprintf(err, errlen, "-fdpass: passing the tunnel to ssh: %s",
                       n < 0 ? strerror(errno) : "short write");
        return -1;
    }
    return 0;
}
