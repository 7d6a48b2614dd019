# Varnish as a plain proxy: every request passes to the shared upstream.
vcl 4.1;
backend b { .host = "127.0.0.1"; .port = "19000"; }
sub vcl_recv { return (pass); }
