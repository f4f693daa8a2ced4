//! Why a directive has no tether equivalent: the reason each "not translated" line gives.

/// Why an http-, server- or location-level directive has no tether equivalent.
pub fn http_reason(name: &str) -> &'static str {
    match name {
        "access_log" | "log_format" | "log_not_found" | "open_log_file_cache" => "tether logs to stderr through `tracing` (RUST_LOG=tether=debug logs every request with its node)",
        "error_log" => "tether logs to stderr; RUST_LOG sets the level",
        "include" => "include is expanded in place",
        "gzip" | "gzip_types" | "gzip_proxied" | "gzip_comp_level" | "gzip_vary" | "gzip_min_length" | "gzip_http_version" | "gzip_disable" | "gzip_buffers" | "brotli" => "tether passes bodies through unchanged and does not compress",
        "sendfile" | "tcp_nopush" | "aio" | "directio" | "output_buffers" | "postpone_output" => "tether does not serve files",
        "root" | "alias" | "index" | "autoindex" | "try_files" | "types" | "default_type" | "charset" | "etag" | "expires" | "open_file_cache" => "tether does not serve files; let your nodes or a CDN serve them",
        "types_hash_max_size" | "types_hash_bucket_size" | "server_names_hash_bucket_size" | "server_names_hash_max_size" | "variables_hash_max_size" | "map_hash_bucket_size" | "map_hash_max_size" | "server_tokens" => "an nginx internal setting",
        "ssl_protocols" | "ssl_ciphers" | "ssl_prefer_server_ciphers" | "ssl_session_cache" | "ssl_session_timeout" | "ssl_session_tickets" | "ssl_dhparam" | "ssl_ecdh_curve" | "ssl_stapling" | "ssl_stapling_verify" | "ssl_trusted_certificate" | "ssl_buffer_size" | "ssl_early_data" | "ssl_conf_command" => "tether's TLS (rustls) offers TLS 1.2 and 1.3 with rustls' safe cipher suites only",
        "ssl_client_certificate" | "ssl_verify_client" | "ssl_verify_depth" => "tether does not check client certificates",
        "http2" | "http2_max_concurrent_streams" | "http3" | "quic_retry" => "tether speaks HTTP/1.1 to clients (which WebSockets need); browsers fall back to it",
        "limit_req" | "limit_req_zone" | "limit_req_status" | "limit_rate" | "limit_rate_after" => "tether does not rate-limit requests; `limits.max_connections_per_ip` caps connections per client",
        "limit_conn" | "limit_conn_zone" | "limit_conn_status" => "tether's `limits.max_connections_per_ip` caps connections per client address (set it by hand: nginx's zones can key on anything)",
        "client_max_body_size" | "client_body_buffer_size" | "client_body_temp_path" => "tether streams request bodies to the node without a size limit",
        "client_header_buffer_size" => "tether's `limits.max_head_bytes` bounds the whole request head",
        "proxy_cache" | "proxy_cache_path" | "proxy_cache_valid" | "proxy_cache_key" | "proxy_cache_bypass" | "proxy_no_cache" | "proxy_cache_use_stale" | "proxy_cache_lock" | "proxy_cache_methods" | "proxy_temp_path" | "proxy_max_temp_file_size" => "tether does not cache",
        "add_header" | "more_set_headers" | "add_trailer" => "tether does not add response headers; set them in your nodes",
        "return" => "tether does not answer or redirect by itself",
        "rewrite" | "rewrite_log" | "if" | "set" | "break" | "error_page" | "recursive_error_pages" | "internal" => "tether does not rewrite requests or run nginx's rewrite module",
        "auth_basic" | "auth_basic_user_file" | "auth_request" | "satisfy" => "tether does not authenticate clients; authenticate in your nodes",
        "allow" | "deny" => "tether does not filter clients by address; use a firewall or network policy",
        "resolver" | "resolver_timeout" => "tether uses the system resolver; `discover.resolver` sets another for DNS discovery",
        "stub_status" => "tether's admin API has /status and /metrics (Prometheus)",
        "fastcgi_pass" | "uwsgi_pass" | "scgi_pass" | "grpc_pass" | "memcached_pass" | "fastcgi_param" | "fastcgi_params" | "fastcgi_index" => "tether proxies HTTP and WebSockets only",
        "geo" | "split_clients" | "map" => "tether has no variables",
        "underscores_in_headers" | "ignore_invalid_headers" | "merge_slashes" | "reset_timedout_connection" | "keepalive_requests" | "keepalive_time" | "lingering_close" | "lingering_time" | "lingering_timeout" => "tether applies its own strict HTTP/1.1 rules",
        "proxy_ssl_verify" | "proxy_ssl_server_name" | "proxy_ssl_name" | "proxy_ssl_protocols" | "proxy_ssl_certificate" | "proxy_ssl_certificate_key" | "proxy_ssl_trusted_certificate" => "tether talks plain HTTP to nodes",
        "server_name" | "listen" => "only meaningful inside a server block",
        _ => "tether has no equivalent",
    }
}
