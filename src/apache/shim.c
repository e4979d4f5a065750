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

apr_status_t mod_wsgi_rs_flush(request_rec *r, apr_bucket_brigade *bb)
{
    apr_status_t rv;

    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(r->connection->bucket_alloc));
    rv = ap_pass_brigade(r->output_filters, bb);
    apr_brigade_cleanup(bb);
    return rv;
}

/*
 * End a response that has started but cannot be completed. An error bucket with status 502 is
 * what httpd's chunking filter recognises as a broken backend: it then leaves out the final
 * chunk and closes the connection, so the client sees a truncated response, not a complete one.
 */
apr_status_t mod_wsgi_rs_abort(request_rec *r, apr_bucket_brigade *bb)
{
    apr_status_t rv;

    r->connection->keepalive = AP_CONN_CLOSE;
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
apr_status_t mod_wsgi_rs_end(request_rec *r, apr_bucket_brigade *bb)
{
    apr_status_t rv;

    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(r->connection->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(r->connection->bucket_alloc));
    rv = ap_pass_brigade(r->output_filters, bb);
    apr_brigade_cleanup(bb);
    return rv;
}

/*
 * Read request body bytes that are already available, without waiting: what
 * ap_get_client_block does, with a non-blocking read. Returns the number of bytes read, 0 when
 * none is available now or the body has ended, -1 on a read error. The end of the body is
 * recorded as ap_get_client_block records it, so later reads see it.
 */
long mod_wsgi_rs_read_available(request_rec *r, char *buffer, apr_size_t bufsiz)
{
    apr_status_t rv;
    apr_bucket_brigade *bb;
    apr_size_t len = bufsiz;

    if (r->remaining < 0 || (!r->read_chunked && r->remaining == 0)) {
        return 0;
    }
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES, APR_NONBLOCK_READ, bufsiz);
    if (APR_STATUS_IS_EAGAIN(rv)) {
        apr_brigade_destroy(bb);
        return 0;
    }
    if (rv != APR_SUCCESS) {
        apr_brigade_destroy(bb);
        return -1;
    }
    if (!APR_BRIGADE_EMPTY(bb) && APR_BUCKET_IS_EOS(APR_BRIGADE_LAST(bb))) {
        r->remaining = r->read_chunked ? -1 : 0;
    }
    rv = apr_brigade_flatten(bb, buffer, &len);
    apr_brigade_destroy(bb);
    if (rv != APR_SUCCESS) {
        return -1;
    }
    r->read_length += len;
    return (long)len;
}
