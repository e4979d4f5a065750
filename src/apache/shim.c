/*
 * The few parts of the APR bucket-brigade API that exist only as macros (ring insertion), wrapped
 * in plain functions that Rust can call. Nothing else belongs here.
 */
#include "../../wrapper.h"

/* Append a transient bucket (copied by Apache only if it must set it aside) and pass it on. */
apr_status_t mod_wsgi_rs_write(request_rec *r, apr_bucket_brigade *bb, const char *data,
                               apr_size_t len, int flush)
{
    apr_bucket *b;
    apr_status_t rv;

    b = apr_bucket_transient_create(data, len, r->connection->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(bb, b);
    if (flush) {
        b = apr_bucket_flush_create(r->connection->bucket_alloc);
        APR_BRIGADE_INSERT_TAIL(bb, b);
    }
    rv = ap_pass_brigade(r->output_filters, bb);
    apr_brigade_cleanup(bb);
    return rv;
}

/*
 * End a response that has started but cannot be completed. An error bucket with status 502 is
 * what httpd's chunking filter recognises as a broken backend: it then leaves out the final
 * chunk and closes the connection, so the client sees a truncated response, not a complete one.
 * The head (and whatever `bb` still holds, such as a wsgi.file_wrapper file) goes out first:
 * meeting the error bucket before the head is sent, httpd's header filter would answer with its
 * own 502 page instead.
 */
apr_status_t mod_wsgi_rs_abort(request_rec *r, apr_bucket_brigade *bb)
{
    apr_status_t rv;

    r->connection->keepalive = AP_CONN_CLOSE;
    if (!r->sent_bodyct || !APR_BRIGADE_EMPTY(bb)) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(r->connection->bucket_alloc));
        ap_pass_brigade(r->output_filters, bb);
        apr_brigade_cleanup(bb);
    }
    APR_BRIGADE_INSERT_TAIL(bb, ap_bucket_error_create(HTTP_BAD_GATEWAY, NULL, r->pool,
                                                       r->connection->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(r->connection->bucket_alloc));
    rv = ap_pass_brigade(r->output_filters, bb);
    apr_brigade_cleanup(bb);
    return rv;
}

/*
 * End a complete response: the end of the stream and a flush, so that it (final chunk included)
 * is on the wire before the handler returns. Otherwise Apache would still hold it when it looks
 * for the client's next request on a kept-alive connection, find none yet, and hand the
 * connection to the event MPM's listener: a round trip through epoll per request.
 */
static void insert_end(request_rec *r, apr_bucket_brigade *bb)
{
    if (r->main) {
        /*
         * A subrequest (mod_include's `#include virtual`): httpd drops its end of stream only
         * when it is the last bucket, so it must not end the page that includes it.
         */
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(r->connection->bucket_alloc));
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(r->connection->bucket_alloc));
        return;
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(r->connection->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(r->connection->bucket_alloc));
}

/* Pass on what `bb` holds. */
apr_status_t mod_wsgi_rs_pass(request_rec *r, apr_bucket_brigade *bb)
{
    apr_status_t rv = ap_pass_brigade(r->output_filters, bb);

    apr_brigade_cleanup(bb);
    return rv;
}

apr_status_t mod_wsgi_rs_end(request_rec *r, apr_bucket_brigade *bb)
{
    insert_end(r, bb);
    return mod_wsgi_rs_pass(r, bb);
}

/* The last piece of a complete response and its end, passed on together. */
apr_status_t mod_wsgi_rs_write_end(request_rec *r, apr_bucket_brigade *bb, const char *data,
                                   apr_size_t len)
{
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create(data, len,
                                                            r->connection->bucket_alloc));
    return mod_wsgi_rs_end(r, bb);
}

/* The same, kept in `bb` (the piece copied) for mod_wsgi_rs_pass to pass on later. */
void mod_wsgi_rs_queue_end(request_rec *r, apr_bucket_brigade *bb, const char *data,
                           apr_size_t len)
{
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_heap_create(data, len, NULL,
                                                       r->connection->bucket_alloc));
    insert_end(r, bb);
}

/*
 * The status of a body read, AP_FILTER_ERROR once an input filter has refused the body and
 * answered the client itself (LimitRequestBody on a chunked body reports success then): the
 * response is over.
 */
static apr_status_t refused_by_filter(request_rec *r, apr_status_t rv)
{
    return r->eos_sent ? AP_FILTER_ERROR : rv;
}

/*
 * Reads up to `max` bytes of the request body into `bb` (empty on entry) with one
 * ap_get_brigade into `tmp` (empty too), waiting for some when `block`, without copying them.
 * Buckets a filter only lends for the call (mod_ssl's transient ones) are set aside into the
 * request pool. Returns the number of bytes: 0 at the end of the body, or when not `block` and
 * none has arrived; -1 on a read error, whose APR status is then in `*status`. The end and the
 * bytes read are recorded as ap_get_client_block records them.
 */
long mod_wsgi_rs_pull_body(request_rec *r, apr_bucket_brigade *bb, apr_bucket_brigade *tmp,
                           apr_size_t max, int block, apr_status_t *status)
{
    apr_size_t total = 0;
    apr_status_t rv;

    *status = APR_SUCCESS;
    if (r->remaining < 0 || (!r->read_chunked && r->remaining == 0) || max == 0) {
        return 0;
    }
    rv = refused_by_filter(r, ap_get_brigade(r->input_filters, tmp, AP_MODE_READBYTES,
                                             block ? APR_BLOCK_READ : APR_NONBLOCK_READ, max));
    if (!block && APR_STATUS_IS_EAGAIN(rv)) {
        apr_brigade_cleanup(tmp);
        return 0;
    }
    if (rv != APR_SUCCESS) {
        apr_brigade_cleanup(tmp);
        r->connection->keepalive = AP_CONN_CLOSE;
        *status = rv;
        return -1;
    }
    if (!APR_BRIGADE_EMPTY(tmp) && APR_BUCKET_IS_EOS(APR_BRIGADE_LAST(tmp))) {
        r->remaining = r->read_chunked ? -1 : 0;
    }
    while (!APR_BRIGADE_EMPTY(tmp)) {
        apr_bucket *e = APR_BRIGADE_FIRST(tmp);
        const char *data;
        apr_size_t len;
        if (APR_BUCKET_IS_METADATA(e)) {
            apr_bucket_delete(e);
            continue;
        }
        rv = apr_bucket_read(e, &data, &len, APR_BLOCK_READ);
        if (rv == APR_SUCCESS) {
            rv = apr_bucket_setaside(e, r->pool);
        }
        if (rv != APR_SUCCESS && rv != APR_ENOTIMPL) {
            apr_brigade_cleanup(tmp);
            r->connection->keepalive = AP_CONN_CLOSE;
            *status = rv;
            return -1;
        }
        APR_BUCKET_REMOVE(e);
        APR_BRIGADE_INSERT_TAIL(bb, e);
        total += e->length;
    }
    r->read_length += total;
    return (long)total;
}

/*
 * ap_get_client_block, with the brigade `bb` (empty on entry, empty again on return) kept by the
 * caller instead of one made in the request pool per call, and the APR status of a failed read
 * in `*status` (ap_get_client_block loses it: a timeout looks like any other failure). Returns the
 * number of bytes copied into `buf`: 0 at the end of the body, -1 on a read error.
 */
long mod_wsgi_rs_read_body(request_rec *r, apr_bucket_brigade *bb, char *buf, apr_size_t len,
                           apr_status_t *status)
{
    apr_status_t rv;

    *status = APR_SUCCESS;
    if (r->remaining < 0 || (!r->read_chunked && r->remaining == 0) || len == 0) {
        return 0;
    }
    rv = refused_by_filter(r, ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                                             APR_BLOCK_READ, len));
    if (rv == APR_SUCCESS) {
        if (!APR_BRIGADE_EMPTY(bb) && APR_BUCKET_IS_EOS(APR_BRIGADE_LAST(bb))) {
            r->remaining = r->read_chunked ? -1 : 0;
        }
        rv = apr_brigade_flatten(bb, buf, &len);
    }
    apr_brigade_cleanup(bb);
    if (rv != APR_SUCCESS) {
        r->connection->keepalive = AP_CONN_CLOSE;
        *status = rv;
        return -1;
    }
    r->read_length += len;
    return (long)len;
}

/*
 * Points iov[0..) at the data of bb's buckets, which must all have been read (as
 * mod_wsgi_rs_pull_body leaves them). Returns how many entries the brigade needs, which may be
 * more than `cap`: then only the first `cap` are filled.
 */
int mod_wsgi_rs_brigade_iovec(apr_bucket_brigade *bb, struct iovec *iov, int cap)
{
    int n = 0;
    apr_bucket *e;

    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb); e = APR_BUCKET_NEXT(e)) {
        const char *data;
        apr_size_t len;
        if (e->length == 0 || apr_bucket_read(e, &data, &len, APR_NONBLOCK_READ) != APR_SUCCESS) {
            continue;
        }
        if (n < cap) {
            iov[n].iov_base = (void *)data;
            iov[n].iov_len = len;
        }
        n++;
    }
    return n;
}
