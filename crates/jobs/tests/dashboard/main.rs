//! The dashboard: its files over HTTP (`assets`), and the page in real
//! headless Chromium against the real API server (`browser`), driven over
//! the Chrome DevTools Protocol (`cdp`).
//!
//! The browser tests need Chromium: `$SLUICE_TEST_CHROMIUM`, else
//! `chromium` on `PATH`; without either they print why and pass.

mod assets;
mod cdp;
