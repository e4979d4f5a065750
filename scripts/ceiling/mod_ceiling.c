/*
 * mod_ceiling: the least work an Apache httpd 2.4 module can do to answer the
 * bench/ URLs (/hello, /echo, /big, /file) with the same bytes as the WSGI
 * apps in bench/apps. It is an upper bound for a WSGI module, not a server:
 * no Python, no environ, no per-request allocation beyond what httpd does.
 *
 * Handlers (SetHandler names):
 *   ceiling-hello         13-byte "Hello, world!", text/plain, Content-Length
 *   ceiling-echo-filters  body read via ap_get_brigade (64 KiB asks), count
 *   ceiling-echo-direct   buffered body bytes via the filters, rest by
 *                         apr_socket_recv on the client socket (bypass bound)
 *   ceiling-big-flush     16 x 64 KiB, each passed with a FLUSH bucket
 *   ceiling-big-noflush   16 x 64 KiB, one pass each, no FLUSH, EOS at end
 *   ceiling-big-onepass   16 x 64 KiB + EOS in a single pass (not in confs)
 *   ceiling-file          CeilingFile as one file bucket (sendfile)
 *   ceiling-relay-{hello,echo,big,file}
 *                         daemon-mode bound: proxy the request over a UNIX
 *                         socket to ceiling_relay (ceiling_relay.c), which
 *                         answers; see "Daemon-mode bound" below
 *
 * CeilingSkipWalk On (in a <Location>): its requests skip core's
 * map_to_storage (directory walk: 7 stat/lstat calls per request here), as
 * mod_proxy does. Off by default, as WSGIScriptAlias needs the walk.
 *
 * CeilingRelaySocket PATH [PROCESSES [THREADS]] (server config): Apache's
 * parent starts ceiling_relay (default 2 x 15) listening on PATH and stops
 * it with itself; CeilingRelayProgram overrides the binary (default: the
 * ceiling_relay next to this module). The relay's file is the server-level
 * CeilingFile.
 *
 * Build: scripts/ceiling/build.sh. Config: ceiling-filters.conf,
 * ceiling-direct.conf (embedded), ceiling-relay.conf (daemon).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_core.h"
#include "util_filter.h"
#include "apr_strings.h"
#include "apr_portable.h"
#include "apr_thread_proc.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "ceiling_relay.h"

#define BLOCK 65536
#define NBLOCKS 16

module AP_MODULE_DECLARE_DATA ceiling_module;

typedef struct {
    const char *file;               /* CeilingFile */
    int skip_walk;                  /* CeilingSkipWalk, -1 = unset */
} ceiling_dir_cfg;

typedef struct {
    const char *socket;             /* CeilingRelaySocket: relay wanted */
    const char *program;            /* CeilingRelayProgram */
    int procs, threads;             /* CeilingRelaySocket's 2nd/3rd args */
} ceiling_srv_cfg;

static const char HELLO[] = "Hello, world!";
static char XBLOCK[BLOCK];          /* 64 KiB of 'x', filled in post_config */
static _Thread_local char RECVBUF[BLOCK];   /* direct reads and relay
                                               answers; one per thread */
static ap_filter_rec_t *eos_filter_handle;

/* Pass one brigade and reuse it. Client aborts are not our error: say
 * AP_FILTER_ERROR so httpd neither logs nor sends an error page. */
static int pass(request_rec *r, apr_bucket_brigade *bb)
{
    apr_status_t rv = ap_pass_brigade(r->output_filters, bb);
    apr_brigade_cleanup(bb);
    return rv == APR_SUCCESS ? OK : AP_FILTER_ERROR;
}

/* One immortal/pool bucket + EOS: the whole response in a single pass. */
static int send_small(request_rec *r, const char *type, const char *s,
                      apr_size_t n, int immortal)
{
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, ba);

    ap_set_content_type(r, type);
    ap_set_content_length(r, n);
    if (!r->header_only)
        APR_BRIGADE_INSERT_TAIL(bb, immortal
                                ? apr_bucket_immortal_create(s, n, ba)
                                : apr_bucket_pool_create(s, n, r->pool, ba));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    return pass(r, bb);
}

static int send_count(request_rec *r, apr_off_t n)
{
    char *s = apr_off_t_toa(r->pool, n);
    return send_small(r, "text/plain", s, strlen(s), 0);
}

/* Read the body through HTTP_IN + core input (what ap_get_client_block and
 * every filter-respecting module does). Bucket data is only looked at, never
 * copied. Also handles chunked bodies, since HTTP_IN dechunks. */
static int echo_filters(request_rec *r)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool,
                                                r->connection->bucket_alloc);
    apr_off_t n = 0;
    int eos = 0;

    while (!eos) {
        apr_bucket *e;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb,
                                         AP_MODE_READBYTES, APR_BLOCK_READ,
                                         BLOCK);
        if (rv != APR_SUCCESS)
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e)) {
            const char *data;
            apr_size_t len;
            if (APR_BUCKET_IS_EOS(e)) {
                eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(e))
                continue;
            rv = apr_bucket_read(e, &data, &len, APR_BLOCK_READ);
            if (rv != APR_SUCCESS)
                return HTTP_BAD_REQUEST;
            n += len;
        }
        apr_brigade_cleanup(bb);
    }
    return send_count(r, n);
}

/* Input filter put in front of HTTP_IN once echo_direct has taken the body
 * off the socket itself: HTTP_IN still believes Content-Length bytes are
 * pending, and ap_discard_request_body() at the end of the request would
 * otherwise block reading the next request's bytes as "body". */
static apr_status_t eos_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                               ap_input_mode_t mode, apr_read_type_e block,
                               apr_off_t readbytes)
{
    (void)mode; (void)block; (void)readbytes;
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(f->c->bucket_alloc));
    return APR_SUCCESS;
}

/* The bound for "bypass the input filters": only the body bytes that core
 * already holds (read together with the headers) go through the filters,
 * the rest is recv()'d straight into one reused 64 KiB buffer. */
static int echo_direct(request_rec *r)
{
    conn_rec *c = r->connection;
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_off_t remaining = 0, n = 0, buffered = 0;
    apr_socket_t *sock;
    apr_bucket *e;
    ap_filter_t *f = r->proto_input_filters->next;
    core_net_rec *net;

    if (apr_table_get(r->headers_in, "Transfer-Encoding"))
        return HTTP_LENGTH_REQUIRED;    /* the bench never sends chunked */
    if (cl && !ap_parse_strict_length(&remaining, cl))
        return HTTP_BAD_REQUEST;
    /* mod_logio (built into Debian's httpd) only counts bytes for %I; it
     * is bypassed like HTTP_IN, so %I undercounts. */
    while (f && !strcmp(f->frec->name, "log_input_output"))
        f = f->next;
    /* Anything else between HTTP_IN and core (TLS, mod_reqtimeout...), a
     * body-transforming filter, or a client waiting for "100 Continue"
     * (sent by HTTP_IN on its first blocking read): use the filters. */
    if (r->expecting_100 || r->input_filters != r->proto_input_filters
        || r->proto_input_filters->frec != ap_http_input_filter_handle
        || !f || f->frec != ap_core_input_filter_handle)
        return echo_filters(r);
    if (remaining == 0)
        return send_count(r, 0);

    /* Count the known-length (already read) buckets core holds; the socket
     * bucket (length -1) ends them. Asking the filters for exactly that many
     * bytes never makes core touch the socket: its "greedy" loop, which
     * would recv() more in 8000-byte steps, stops once it has readbytes. */
    net = f->ctx;
    if (net && net->in_ctx) {
        for (e = APR_BRIGADE_FIRST(net->in_ctx->b);
             e != APR_BRIGADE_SENTINEL(net->in_ctx->b)
             && e->length != (apr_size_t)-1; e = APR_BUCKET_NEXT(e))
            buffered += e->length;
    }
    if (buffered > remaining)
        buffered = remaining;           /* the rest is the next request */
    if (buffered > 0) {
        apr_bucket_brigade *bb = apr_brigade_create(r->pool, c->bucket_alloc);
        apr_off_t got = 0;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb,
                                         AP_MODE_READBYTES, APR_BLOCK_READ,
                                         buffered);
        if (rv != APR_SUCCESS)
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        apr_brigade_length(bb, 1, &got);    /* heap buckets: no copy */
        apr_brigade_cleanup(bb);
        n += got;
        remaining -= got;
    }
    if (remaining == 0)
        return send_count(r, n);        /* HTTP_IN saw the whole body */

    ap_add_input_filter_handle(eos_filter_handle, NULL, r, c);
    sock = ap_get_conn_socket(c);   /* its APR timeout is the Timeout directive */
    while (remaining > 0) {
        apr_size_t len = remaining < BLOCK ? (apr_size_t)remaining : BLOCK;
        apr_status_t rv = apr_socket_recv(sock, RECVBUF, &len);
        if (rv != APR_SUCCESS || len == 0) {
            c->keepalive = AP_CONN_CLOSE;   /* stream position unknown now */
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r,
                          "ceiling: body recv failed, %" APR_OFF_T_FMT
                          " bytes short", remaining);
            return HTTP_BAD_REQUEST;
        }
        n += len;
        remaining -= len;
    }
    return send_count(r, n);
}

/* 16 x 64 KiB from one static buffer (immortal buckets: never copied, also
 * not when core sets them aside). FLUSH mirrors a streaming WSGI adapter
 * that flushes after every yielded block. */
enum { NOFLUSH, FLUSH, ONEPASS };

static int big(request_rec *r, int mode)
{
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, ba);
    int i, rc;

    ap_set_content_type(r, "application/octet-stream");
    ap_set_content_length(r, (apr_off_t)BLOCK * NBLOCKS);
    for (i = 0; i < NBLOCKS && !r->header_only; i++) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_immortal_create(XBLOCK, BLOCK, ba));
        if (mode == ONEPASS)
            continue;
        if (mode == FLUSH)
            APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(ba));
        if ((rc = pass(r, bb)) != OK)
            return rc;
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    return pass(r, bb);
}

/* One file bucket: core_output_filter sendfile()s it (EnableSendfile On). */
static int send_file(request_rec *r)
{
    ceiling_dir_cfg *cfg = ap_get_module_config(r->per_dir_config,
                                                &ceiling_module);
    core_dir_config *core = ap_get_core_module_config(r->per_dir_config);
    apr_bucket_brigade *bb;
    apr_finfo_t fi;
    apr_file_t *fd;
    apr_int32_t flags = APR_FOPEN_READ;
    apr_status_t rv;

    if (!cfg->file) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "ceiling: CeilingFile not set");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (core->enable_sendfile == ENABLE_SENDFILE_ON)
        flags |= APR_FOPEN_SENDFILE_ENABLED;
    if ((rv = apr_file_open(&fd, cfg->file, flags, 0, r->pool)) != APR_SUCCESS
        || (rv = apr_file_info_get(&fi, APR_FINFO_SIZE, fd)) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, "ceiling: %s", cfg->file);
        return HTTP_NOT_FOUND;
    }
    ap_set_content_type(r, "application/octet-stream");
    ap_set_content_length(r, fi.size);
    apr_table_setn(r->headers_out, "X-File-Wrapper", "yes");
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    if (!r->header_only)
        apr_brigade_insert_file(bb, fd, 0, fi.size, r->pool);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
    return pass(r, bb);
}

/* ---- Daemon-mode bound -------------------------------------------------
 * The least an Apache child must do to proxy a request to another process
 * and relay its answer: per request one UNIX-socket connection to
 * ceiling_relay, header + body out (body from HTTP_IN, writev of the
 * brigade's own bytes), header + body back (through one 64 KiB buffer per
 * thread, each piece passed down with a FLUSH, as a streaming proxy must),
 * or, for /file, the relay's open descriptor (SCM_RIGHTS) as a file bucket.
 * No environ, no frames beyond two fixed headers. */

#define NIOV 64

static apr_status_t close_fd(void *fd)
{
    close((int)(intptr_t)fd);
    return APR_SUCCESS;
}

/* Descriptors live as long as the request: the file bucket may still be
 * sendfile()ing (write completion) after the handler returned. */
static void close_with_request(request_rec *r, int fd)
{
    apr_pool_cleanup_register(r->pool, (void *)(intptr_t)fd, close_fd,
                              apr_pool_cleanup_null);
}

/* Header, then the body as HTTP_IN hands it over (64 KiB asks), each
 * brigade written straight from its buckets' memory. */
static int relay_send(request_rec *r, int fd, struct relay_req *rq)
{
    struct iovec iov[NIOV] = { { rq, sizeof *rq } };
    apr_bucket_brigade *bb;
    apr_off_t sent = 0;
    int n = 1, eos = 0;

    if (rq->body_len == 0)
        return relay_write_all(fd, iov, 1) < 0 ? HTTP_BAD_GATEWAY : OK;
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    while (!eos) {
        apr_bucket *e;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb,
                                         AP_MODE_READBYTES, APR_BLOCK_READ,
                                         BLOCK);
        if (rv != APR_SUCCESS)
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e)) {
            const char *data;
            apr_size_t len;
            if (APR_BUCKET_IS_EOS(e)) {
                eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(e))
                continue;
            if (apr_bucket_read(e, &data, &len, APR_BLOCK_READ) != APR_SUCCESS)
                return HTTP_BAD_REQUEST;
            if (n == NIOV) {
                if (relay_write_all(fd, iov, n) < 0)
                    return HTTP_BAD_GATEWAY;
                n = 0;
            }
            iov[n].iov_base = (void *)data;
            iov[n++].iov_len = len;
            sent += len;
        }
        /* before the cleanup: the buckets own these bytes */
        if (n && relay_write_all(fd, iov, n) < 0)
            return HTTP_BAD_GATEWAY;
        n = 0;
        apr_brigade_cleanup(bb);
    }
    return sent == (apr_off_t)rq->body_len ? OK : HTTP_BAD_REQUEST;
}

/* Answer header into rs, first body bytes to RECVBUF[0..*have) (one read
 * for small answers), and the descriptor if one came along. -1 on EOF or
 * error (EAGAIN: socket timeout). */
static int relay_recv_head(request_rec *r, int fd, struct relay_resp *rs,
                           apr_size_t *have, int *file_fd)
{
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } cm;
    struct iovec iov[2] = { { rs, sizeof *rs }, { RECVBUF, BLOCK } };
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
    size_t got = 0;

    *file_fd = -1;
    while (got < sizeof *rs) {
        struct cmsghdr *h;
        ssize_t n;
        m.msg_control = cm.b;
        m.msg_controllen = sizeof cm.b;
        n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        for (h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
            if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS
                && *file_fd < 0) {
                memcpy(file_fd, CMSG_DATA(h), sizeof(int));
                close_with_request(r, *file_fd);
            }
        got += n;
        if (got < sizeof *rs) {
            iov[0].iov_base = (char *)rs + got;
            iov[0].iov_len = sizeof *rs - got;
        }
    }
    *have = got - sizeof *rs;
    return 0;
}

/* Body: piece (bytes already in RECVBUF), then the rest in 64 KiB reads.
 * A small answer read whole goes down in one pass with EOS (as the embedded
 * handlers do); otherwise each piece is a transient bucket + FLUSH, so core
 * has written it before RECVBUF is reused. */
static int relay_stream(request_rec *r, int fd, apr_bucket_brigade *bb,
                        apr_size_t piece, apr_off_t remaining)
{
    apr_bucket_alloc_t *ba = bb->bucket_alloc;
    int rc;

    if (r->header_only)
        piece = remaining = 0;
    if (remaining == 0) {
        if (piece)
            APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create(RECVBUF,
                                                                  piece, ba));
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
        return pass(r, bb);
    }
    for (;;) {
        ssize_t n;
        if (piece) {
            APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create(RECVBUF,
                                                                  piece, ba));
            APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(ba));
            if ((rc = pass(r, bb)) != OK)
                return rc;
        }
        if (remaining == 0)
            break;
        n = recv(fd, RECVBUF, remaining < BLOCK ? (size_t)remaining : BLOCK,
                 MSG_WAITALL);
        if (n <= 0 && !(n < 0 && errno == EINTR)) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, n < 0 ? errno : 0, r,
                          "ceiling: relay answer cut short, %" APR_OFF_T_FMT
                          " bytes missing", remaining);
            r->connection->keepalive = AP_CONN_CLOSE;   /* client sees it */
            return AP_FILTER_ERROR;
        }
        piece = n > 0 ? (apr_size_t)n : 0;
        remaining -= piece;
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    return pass(r, bb);
}

static int relay(request_rec *r, int kind)
{
    ceiling_srv_cfg *sc = ap_get_module_config(r->server->module_config,
                                               &ceiling_module);
    core_dir_config *core = ap_get_core_module_config(r->per_dir_config);
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    struct relay_req rq = { (uint32_t)kind, 0, 0 };
    struct relay_resp rs;
    struct timeval tv;
    apr_bucket_brigade *bb;
    apr_off_t len = 0;
    apr_size_t have;
    int fd, ffd, rc;

    if (!sc->socket) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "ceiling: CeilingRelaySocket not set");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (apr_table_get(r->headers_in, "Transfer-Encoding"))
        return HTTP_LENGTH_REQUIRED;    /* the bench never sends chunked */
    if (cl && !ap_parse_strict_length(&len, cl))
        return HTTP_BAD_REQUEST;
    rq.body_len = len;
    strcpy(a.sun_path, sc->socket);     /* length checked by the directive */

    /* blocking, bounded by Timeout as every other wait of the request */
    tv.tv_sec = apr_time_sec(r->server->timeout);
    tv.tv_usec = apr_time_usec(r->server->timeout);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return HTTP_SERVICE_UNAVAILABLE;
    close_with_request(r, fd);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, errno, r,
                      "ceiling: connect to relay %s", sc->socket);
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if ((rc = relay_send(r, fd, &rq)) != OK)
        return rc;
    if (relay_recv_head(r, fd, &rs, &have, &ffd) < 0 || rs.kind != rq.kind
        || (rs.status == HTTP_OK && (kind == RELAY_FILE ? ffd < 0
                                     : (apr_uint64_t)have > rs.length))) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, errno, r,
                      "ceiling: no or bad answer from relay");
        return HTTP_BAD_GATEWAY;
    }
    if (rs.status != HTTP_OK)
        return rs.status;
    ap_set_content_type(r, kind == RELAY_HELLO || kind == RELAY_ECHO
                           ? "text/plain" : "application/octet-stream");
    ap_set_content_length(r, rs.length);
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    if (kind == RELAY_FILE) {
        apr_file_t *f;
        apr_int32_t flags = APR_FOPEN_READ;
        if (core->enable_sendfile == ENABLE_SENDFILE_ON)
            flags |= APR_FOPEN_SENDFILE_ENABLED;
        apr_os_file_put(&f, &ffd, flags, r->pool); /* no cleanup: ours */
        apr_table_setn(r->headers_out, "X-File-Wrapper", "yes");
        if (!r->header_only)
            apr_brigade_insert_file(bb, f, 0, rs.length, r->pool);
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
        return pass(r, bb);
    }
    return relay_stream(r, fd, bb, have, rs.length - have);
}

static int ceiling_handler(request_rec *r)
{
    const char *h = r->handler;

    if (!h || strncmp(h, "ceiling-", 8) != 0)
        return DECLINED;
    h += 8;
    if (!strcmp(h, "hello"))
        return send_small(r, "text/plain", HELLO, sizeof(HELLO) - 1, 1);
    if (!strcmp(h, "echo-filters"))
        return echo_filters(r);
    if (!strcmp(h, "echo-direct"))
        return echo_direct(r);
    if (!strcmp(h, "big-flush"))
        return big(r, FLUSH);
    if (!strcmp(h, "big-noflush"))
        return big(r, NOFLUSH);
    if (!strcmp(h, "big-onepass"))
        return big(r, ONEPASS);
    if (!strcmp(h, "file"))
        return send_file(r);
    if (!strncmp(h, "relay-", 6)) {
        static const char *const kinds[] = { "hello", "echo", "big", "file" };
        int i;
        for (i = 0; i < 4; i++)
            if (!strcmp(h + 6, kinds[i]))
                return relay(r, RELAY_HELLO + i);
    }
    return DECLINED;
}

/* translate_name runs after the <Location> walk, so a CeilingSkipWalk in a
 * <Location> is visible here (SetHandler is an expression, not evaluated
 * yet). Claim the URI (no DocumentRoot mapping), mark it for map_to_storage. */
static int ceiling_translate(request_rec *r)
{
    ceiling_dir_cfg *cfg = ap_get_module_config(r->per_dir_config,
                                                &ceiling_module);

    if (cfg->skip_walk != 1)
        return DECLINED;
    r->filename = apr_pstrcat(r->pool, "ceiling:", r->uri, NULL);
    return OK;
}

/* OK before core_map_to_storage = no directory/file walk, so no <Directory>
 * sections (and no "Require all denied" from <Directory />) apply. */
static int ceiling_map_to_storage(request_rec *r)
{
    return r->filename && !strncmp(r->filename, "ceiling:", 8) ? OK : DECLINED;
}

/* ---- The relay's life: started and stopped by Apache's parent ----------
 * Like mod_wsgi's daemon processes: forked from the parent in post_config of
 * each config generation (not in -t, not in the preflight pass), stopped by
 * a cleanup on pconf, which is cleared both at shutdown and before a
 * restart re-reads the config; so a restart replaces the relay. */

static pid_t relay_pid;         /* in Apache's parent only (relay_parent) */
static pid_t relay_parent;

/* MPM children exit() through apr_terminate too, running every pconf
 * cleanup: only the parent that started the relay may stop it. */
static apr_status_t relay_stop(void *data)
{
    int i;

    (void)data;
    if (relay_pid <= 0 || getpid() != relay_parent)
        return APR_SUCCESS;
    kill(relay_pid, SIGTERM);
    for (i = 0; i < 500 && waitpid(relay_pid, NULL, WNOHANG) == 0; i++)
        usleep(10000);
    if (i == 500) {
        kill(relay_pid, SIGKILL);
        waitpid(relay_pid, NULL, 0);
    }
    relay_pid = 0;
    return APR_SUCCESS;
}

/* The MPM's main loop reaps every child of the parent, the relay too; as a
 * registered "other child" its death is reported here, not lost. */
static void relay_maint(int reason, void *data, int status)
{
    if (reason != APR_OC_REASON_DEATH && reason != APR_OC_REASON_LOST)
        return;
    if (reason == APR_OC_REASON_DEATH)
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, NULL,
                     "ceiling: relay pid %d exited (status %d)",
                     (int)relay_pid, status);
    relay_pid = 0;
    apr_proc_other_child_unregister(data);
}

static int relay_start(apr_pool_t *p, server_rec *s, ceiling_srv_cfg *sc)
{
    ceiling_dir_cfg *dc = ap_get_module_config(s->lookup_defaults,
                                               &ceiling_module);
    char procs[16], threads[16], ready[8] = "";
    /* "(wsgi:" so that bench.py counts it as the "WSGI daemons" memory */
    char *argv[] = { "(wsgi:ceiling-relay)", (char *)sc->socket,
                     (char *)(dc->file ? dc->file : ""), procs, threads, NULL };
    struct pollfd pfd;
    apr_proc_t *proc;
    pid_t pid, parent = getpid();
    int pipefd[2];
    Dl_info di;

    if (!sc->program) {     /* default: ceiling_relay next to this module */
        if (!dladdr((void *)relay_start, &di) || !di.dli_fname)
            return HTTP_INTERNAL_SERVER_ERROR;
        sc->program = apr_pstrcat(p, ap_make_dirstr_parent(p, di.dli_fname),
                                  "ceiling_relay", NULL);
    }
    if (access(sc->program, X_OK) < 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, errno, s,
                     "ceiling: relay program %s", sc->program);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_snprintf(procs, sizeof procs, "%d", sc->procs);
    apr_snprintf(threads, sizeof threads, "%d", sc->threads);
    if (pipe2(pipefd, O_CLOEXEC) < 0 || (pid = fork()) < 0)
        return HTTP_INTERNAL_SERVER_ERROR;
    if (pid == 0) {
        sigset_t none;
        /* dies with Apache's parent however that dies (even SIGKILL) */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(pipefd[1], 1);         /* stdout = "ready" pipe; stderr = log */
        close_range(3, ~0U, 0);     /* Apache's listeners, pipes, logs */
        execv(sc->program, argv);
        _exit(127);
    }
    close(pipefd[1]);
    /* Wait until it listens, so the first request finds it; EOF means it
     * failed (its stderr is our error log). */
    pfd.fd = pipefd[0];
    pfd.events = POLLIN;
    if (poll(&pfd, 1, 10000) == 1)
        (void)!read(pipefd[0], ready, sizeof ready - 1);
    close(pipefd[0]);
    relay_pid = pid;
    relay_parent = parent;
    apr_pool_cleanup_register(p, NULL, relay_stop, apr_pool_cleanup_null);
    if (strncmp(ready, "ready", 5) != 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "ceiling: relay %s did not start", sc->program);
        relay_stop(NULL);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    proc = apr_pcalloc(p, sizeof *proc);
    proc->pid = pid;
    apr_proc_other_child_register(proc, relay_maint, &relay_pid, NULL, p);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "ceiling: relay pid %d: %s %s %s x %s", (int)pid,
                 sc->program, sc->socket, procs, threads);
    return OK;
}

static int ceiling_post_config(apr_pool_t *p, apr_pool_t *plog,
                               apr_pool_t *ptemp, server_rec *s)
{
    ceiling_srv_cfg *sc = ap_get_module_config(s->module_config,
                                               &ceiling_module);

    (void)plog; (void)ptemp;
    memset(XBLOCK, 'x', sizeof(XBLOCK));
    /* the first (preflight) post_config run is followed by a real one */
    if (!sc->socket
        || ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG
        || ap_state_query(AP_SQ_RUN_MODE) != AP_SQ_RM_NORMAL)
        return OK;
    return relay_start(p, s, sc);
}

static void *create_dir_cfg(apr_pool_t *p, char *dir)
{
    ceiling_dir_cfg *cfg = apr_pcalloc(p, sizeof(*cfg));

    (void)dir;
    cfg->skip_walk = -1;
    return cfg;
}

static void *merge_dir_cfg(apr_pool_t *p, void *basev, void *addv)
{
    ceiling_dir_cfg *base = basev, *add = addv;
    ceiling_dir_cfg *cfg = apr_pcalloc(p, sizeof(*cfg));
    cfg->file = add->file ? add->file : base->file;
    cfg->skip_walk = add->skip_walk != -1 ? add->skip_walk : base->skip_walk;
    return cfg;
}

static void *create_srv_cfg(apr_pool_t *p, server_rec *s)
{
    ceiling_srv_cfg *sc = apr_pcalloc(p, sizeof(*sc));

    (void)s;
    sc->procs = 2;
    sc->threads = 15;
    return sc;
}

static void *merge_srv_cfg(apr_pool_t *p, void *basev, void *addv)
{
    ceiling_srv_cfg *base = basev, *add = addv;

    (void)p;
    return add->socket || add->program ? add : base;
}

static const char *set_relay_socket(cmd_parms *cmd, void *d, const char *path,
                                    const char *procs, const char *threads)
{
    ceiling_srv_cfg *sc = ap_get_module_config(cmd->server->module_config,
                                               &ceiling_module);

    (void)d;
    sc->socket = ap_server_root_relative(cmd->pool, path);
    if (!sc->socket
        || strlen(sc->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return "CeilingRelaySocket: bad or too long path";
    sc->procs = procs ? atoi(procs) : 2;
    sc->threads = threads ? atoi(threads) : 15;
    if (sc->procs < 1 || sc->procs > 64 || sc->threads < 1)
        return "CeilingRelaySocket: processes 1-64, threads >= 1";
    return NULL;
}

static const char *set_relay_program(cmd_parms *cmd, void *d, const char *path)
{
    ceiling_srv_cfg *sc = ap_get_module_config(cmd->server->module_config,
                                               &ceiling_module);

    (void)d;
    sc->program = ap_server_root_relative(cmd->pool, path);
    return NULL;
}

static const command_rec ceiling_cmds[] = {
    AP_INIT_TAKE1("CeilingFile", ap_set_file_slot,
                  (void *)APR_OFFSETOF(ceiling_dir_cfg, file), OR_ALL,
                  "file sent by the ceiling-file handler"),
    AP_INIT_FLAG("CeilingSkipWalk", ap_set_flag_slot,
                 (void *)APR_OFFSETOF(ceiling_dir_cfg, skip_walk), OR_ALL,
                 "On: requests here skip core's directory walk"),
    AP_INIT_TAKE123("CeilingRelaySocket", set_relay_socket, NULL, RSRC_CONF,
                    "path [processes [threads]] (default 2 15): start "
                    "ceiling_relay with Apache, listening there"),
    AP_INIT_TAKE1("CeilingRelayProgram", set_relay_program, NULL, RSRC_CONF,
                  "relay binary (default: ceiling_relay next to this module)"),
    {NULL}
};

static void register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_post_config(ceiling_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(ceiling_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_translate_name(ceiling_translate, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_map_to_storage(ceiling_map_to_storage, NULL, NULL, APR_HOOK_FIRST);
    /* RESOURCE type: inserted above HTTP_IN (a PROTOCOL filter). */
    eos_filter_handle = ap_register_input_filter("CEILING_BODY_DONE", eos_filter,
                                                 NULL, AP_FTYPE_RESOURCE);
}

AP_DECLARE_MODULE(ceiling) = {
    STANDARD20_MODULE_STUFF,
    create_dir_cfg,
    merge_dir_cfg,
    create_srv_cfg,
    merge_srv_cfg,
    ceiling_cmds,
    register_hooks,
    AP_MODULE_FLAG_NONE
};
