/*
 * ceiling_relay: the "daemon" half of the daemon-mode ceiling. It answers
 * mod_ceiling's ceiling-relay-* handlers over a UNIX socket (format in
 * ceiling_relay.h) with the same bytes as bench/apps/{hello,echo,big,file}.wsgi,
 * doing nothing else: no Python, no per-request allocation (one 64 KiB stack
 * buffer per thread), blocking I/O, one request per connection.
 *
 *   ceiling_relay SOCKET FILE [PROCESSES [THREADS]]     (default 2 x 15)
 *
 * Binds SOCKET, forks PROCESSES workers that each run THREADS threads
 * blocking in accept() on the shared socket (the kernel hands each
 * connection to one waiting thread), prints "ready" on stdout, then waits for
 * SIGTERM/SIGINT or a worker's death and takes the workers down with it.
 * mod_ceiling starts it from Apache's parent (see relay_start there).
 * Build: scripts/ceiling/build.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "ceiling_relay.h"

#define NBLOCKS 16
#define MAXPROCS 64

static const char HELLO[] = "Hello, world!";
static char XBLOCK[RELAY_BLOCK];    /* /big's block, 64 KiB of 'x' */
static const char *file_path;       /* /file's file */

/* The open file goes to the Apache child with the header (SCM_RIGHTS), as in
 * the Rust daemon mode: the child sendfile()s it, no data crosses the relay.
 * Opened per request, as file.wsgi does. */
static void send_file(int c, struct relay_resp *rs)
{
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } cm;
    struct iovec iov = { rs, sizeof *rs };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    struct cmsghdr *h;
    struct stat st;
    int fd = open(file_path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) < 0) {
        rs->status = 404;
        relay_write_all(c, &iov, 1);
        if (fd >= 0)
            close(fd);
        return;
    }
    rs->length = st.st_size;
    memset(&cm, 0, sizeof cm);
    m.msg_control = cm.b;
    m.msg_controllen = sizeof cm.b;
    h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof fd);
    while (sendmsg(c, &m, 0) < 0 && errno == EINTR)
        ;
    close(fd);
}

static void serve(int c, char *buf)
{
    struct relay_req rq;
    struct relay_resp rs = { 200, 0, 0 };
    /* header into rq, first body bytes into buf: one read for small bodies */
    struct iovec iov[2] = { { &rq, sizeof rq }, { buf, RELAY_BLOCK } };
    size_t got = 0;
    uint64_t have;
    char num[24];
    int i;

    while (got < sizeof rq) {
        ssize_t n = readv(c, iov, 2);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        got += n;
        if (got < sizeof rq) {
            iov[0].iov_base = (char *)&rq + got;
            iov[0].iov_len = sizeof rq - got;
        }
    }
    /* Read every body byte whatever the kind: closing with unread data would
     * reset the connection under the child's last write. */
    for (have = got - sizeof rq; have < rq.body_len;) {
        uint64_t left = rq.body_len - have;
        ssize_t n = recv(c, buf, left < RELAY_BLOCK ? left : RELAY_BLOCK, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        have += n;
    }
    rs.kind = rq.kind;
    iov[0].iov_base = &rs;
    iov[0].iov_len = sizeof rs;
    switch (rq.kind) {
    case RELAY_HELLO:
        rs.length = sizeof HELLO - 1;
        iov[1].iov_base = (void *)HELLO;
        iov[1].iov_len = rs.length;
        relay_write_all(c, iov, 2);
        break;
    case RELAY_ECHO:
        rs.length = snprintf(num, sizeof num, "%llu", (unsigned long long)have);
        iov[1].iov_base = num;
        iov[1].iov_len = rs.length;
        relay_write_all(c, iov, 2);
        break;
    case RELAY_BIG:                 /* 16 writes of one static block */
        rs.length = (uint64_t)NBLOCKS * RELAY_BLOCK;
        for (i = 0; i < NBLOCKS; i++) {
            struct iovec *v = i ? &iov[1] : iov;
            iov[1].iov_base = XBLOCK;
            iov[1].iov_len = RELAY_BLOCK;
            if (relay_write_all(c, v, i ? 1 : 2) < 0)
                break;              /* the child gave up (client gone) */
        }
        break;
    case RELAY_FILE:
        send_file(c, &rs);
        break;
    default:
        rs.status = 400;
        relay_write_all(c, iov, 1);
    }
}

static void *worker(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    char buf[RELAY_BLOCK];          /* this thread's only buffer */

    for (;;) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno != EINTR && errno != ECONNABORTED) {
                perror("ceiling_relay: accept");
                usleep(10000);      /* EMFILE etc.: don't spin */
            }
            continue;
        }
        serve(c, buf);
        close(c);
    }
    return NULL;
}

static void run_worker(int lfd, int threads)
{
    pthread_t t;
    int i;

    for (i = 1; i < threads; i++)
        if ((errno = pthread_create(&t, NULL, worker, (void *)(intptr_t)lfd))) {
            perror("ceiling_relay: pthread_create");
            _exit(1);
        }
    worker((void *)(intptr_t)lfd);
}

static void die(const char *what)
{
    fprintf(stderr, "ceiling_relay: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    pid_t pids[MAXPROCS], sup = getpid();
    sigset_t set, old;
    int procs, threads, lfd, i, sig, ws, status = 0;

    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: %s SOCKET FILE [PROCESSES [THREADS]]\n", argv[0]);
        return 2;
    }
    file_path = argv[2];
    procs = argc > 3 ? atoi(argv[3]) : 2;
    threads = argc > 4 ? atoi(argv[4]) : 15;
    if (procs < 1 || procs > MAXPROCS || threads < 1
        || strlen(argv[1]) >= sizeof a.sun_path) {
        fprintf(stderr, "ceiling_relay: bad arguments\n");
        return 2;
    }
    strcpy(a.sun_path, argv[1]);
    memset(XBLOCK, 'x', sizeof XBLOCK);
    /* Peers that went away show up as EPIPE, not as a signal. Apache may
     * signal its whole process group on restarts: only TERM/INT stop us. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGWINCH, SIG_IGN);

    /* chmod 0666: we run as Apache's parent (root) and the MPM children as
     * User. Any local user may connect; acceptable only because this is a
     * measuring tool whose socket lives in the bench's private run dir. */
    if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        die("socket");
    unlink(a.sun_path);             /* stale socket of an earlier run */
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0)
        die(a.sun_path);
    if (chmod(a.sun_path, 0666) < 0 || listen(lfd, 1024) < 0)
        die("chmod/listen");

    /* Blocked before fork so no signal is lost; workers unblock them. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);
    for (i = 0; i < procs; i++) {
        if ((pids[i] = fork()) < 0) {
            perror("ceiling_relay: fork");
            procs = i;
            status = 1;
            break;
        }
        if (pids[i] == 0) {
            sigprocmask(SIG_SETMASK, &old, NULL);
            /* a worker must not outlive this supervisor, even on SIGKILL */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != sup)
                _exit(1);
            dup2(2, 1);             /* not mod_ceiling's "ready" pipe */
            run_worker(lfd, threads);
        }
    }
    if (!status) {
        /* mod_ceiling waits for this line (stdout is its pipe) */
        printf("ready\n");
        fflush(stdout);
        fclose(stdout);
    }
    while (!status) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig != SIGCHLD)
            break;
        if (waitpid(-1, &ws, WNOHANG) > 0) {    /* a worker died */
            fprintf(stderr, "ceiling_relay: a worker exited (status 0x%x), "
                    "stopping\n", ws);
            status = 1;
        }
    }
    for (i = 0; i < procs; i++)
        kill(pids[i], SIGTERM);
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    unlink(a.sun_path);
    return status;
}
