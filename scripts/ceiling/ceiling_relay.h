/*
 * Wire format between mod_ceiling's ceiling-relay-* handlers (Apache child)
 * and ceiling_relay (the "daemon"). One request per UNIX stream connection:
 *
 *   child -> relay:  struct relay_req, then body_len body bytes
 *   relay -> child:  struct relay_resp, then either length body bytes or,
 *                    for RELAY_FILE, nothing: the open file rides on the
 *                    header's sendmsg as SCM_RIGHTS and the child sendfile()s
 *                    it; then the relay closes.
 *
 * Native byte order and fixed sizes: both ends run on the same machine and
 * are built together (scripts/ceiling/build.sh).
 */
#ifndef CEILING_RELAY_H
#define CEILING_RELAY_H
#include <errno.h>
#include <stdint.h>
#include <sys/uio.h>

#define RELAY_BLOCK 65536          /* read/write unit on both sides */

enum relay_kind { RELAY_HELLO = 1, RELAY_ECHO, RELAY_BIG, RELAY_FILE };

struct relay_req {
    uint32_t kind;                 /* enum relay_kind */
    uint32_t pad;
    uint64_t body_len;             /* exactly this many body bytes follow */
};

struct relay_resp {
    uint32_t status;               /* HTTP status; body only if 200 */
    uint32_t kind;                 /* echoes relay_req.kind */
    uint64_t length;               /* Content-Length (file: file size) */
};

/* writev until everything is out: a blocking socket still returns short on
 * a signal, a send timeout, or a peer that goes away mid-write. Advances iov.
 * 0, or -1 with errno. */
static inline int relay_write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--)
            w -= iov->iov_len;
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= w;
        }
    }
    return 0;
}

#endif
