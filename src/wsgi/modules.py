# Fills the `mod_wsgi` and `apache` modules every interpreter gets (as C mod_wsgi 4.9.4 provides
# them). `info` is a dict of what the server knows; `FileWrapper` is wsgi.file_wrapper's class.
def fill(mod_wsgi, apache, info, FileWrapper):
    mod_wsgi.version = info["mod_wsgi_version"]
    mod_wsgi.rs_version = info["rs_version"]
    mod_wsgi.process_group = info["process_group"]
    mod_wsgi.application_group = info["application_group"]
    mod_wsgi.maximum_processes = info["maximum_processes"]
    mod_wsgi.threads_per_process = info["threads_per_process"]
    mod_wsgi.FileWrapper = FileWrapper
    apache.version = info["apache_version"]
    apache.maximum_processes = info["maximum_processes"]
    apache.threads_per_process = info["threads_per_process"]
    apache.description = info["description"]
    apache.mpm_name = info["mpm_name"]
    apache.build_date = info["build_date"]
