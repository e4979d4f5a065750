/* The Apache httpd 2.4 and APR headers that bindgen turns into src/apache/bindings.rs. */
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_main.h>
#include <http_protocol.h>
#include <http_request.h>
#include <ap_mpm.h>
#include <ap_regex.h>
#include <mpm_common.h>
#include <util_script.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <apr_buckets.h>
#include <apr_optional.h>
#include <http_connection.h>
#include <unixd.h>
#include <ap_listen.h>
#include <mod_auth.h>

/* Exported by src/apache/shim.c: the macro-only parts of the brigade API. */
apr_status_t mod_wsgi_rs_write(request_rec *r, apr_bucket_brigade *bb, const char *data,
                               apr_size_t len, int flush);
apr_status_t mod_wsgi_rs_abort(request_rec *r, apr_bucket_brigade *bb);
apr_status_t mod_wsgi_rs_end(request_rec *r, apr_bucket_brigade *bb);
apr_status_t mod_wsgi_rs_write_end(request_rec *r, apr_bucket_brigade *bb, const char *data,
                                   apr_size_t len);
void mod_wsgi_rs_queue_end(request_rec *r, apr_bucket_brigade *bb, const char *data,
                           apr_size_t len);
apr_status_t mod_wsgi_rs_pass(request_rec *r, apr_bucket_brigade *bb);
long mod_wsgi_rs_pull_body(request_rec *r, apr_bucket_brigade *bb, apr_bucket_brigade *tmp,
                           apr_size_t max, int block, apr_status_t *status);
long mod_wsgi_rs_read_body(request_rec *r, apr_bucket_brigade *bb, char *buf, apr_size_t len,
                           apr_status_t *status);
int mod_wsgi_rs_brigade_iovec(apr_bucket_brigade *bb, struct iovec *iov, int cap);
