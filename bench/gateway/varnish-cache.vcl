# Varnish with the built-in VCL logic (only the backend is declared), for the
# cache-hit scenario: /c is cached for its max-age=60.
vcl 4.1;
backend b { .host = "127.0.0.1"; .port = "19000"; }
