// Package tlsutil builds the TLS configurations maildirector uses on both
// sides of a session: the listener side (certificates loaded from files,
// chosen per connection by SNI, reloaded on SIGHUP) and the backend side
// (optional verification against a CA file). It also owns the small helpers
// every frontend shares: a deadline-bound handshake for implicit TLS and
// STARTTLS, the OpenSSL names of TLS versions that go into the PROXY v2 SSL
// TLV, and self-signed certificates for tests and `make demo`.
//
// tlsutil is a leaf: it imports only the standard library.
//
// Usage:
//
//	srv, err := tlsutil.NewServer(tlsutil.ServerOptions{
//		Certs: []tlsutil.CertFiles{
//			{Cert: "/etc/maildirector/default.crt", Key: "/etc/maildirector/default.key"},
//			{Cert: "/etc/maildirector/wild.crt", Key: "/etc/maildirector/wild.key"},
//		},
//	})
//	if err != nil {
//		return err
//	}
//	ln = tls.NewListener(ln, srv.Config())
//	// on SIGHUP:
//	if err := srv.Reload(); err != nil {
//		logger.Error("tls reload failed, keeping old certificates", "err", err)
//	}
//
//	// STARTTLS on an accepted connection:
//	tc := tls.Server(conn, srv.Config())
//	if err := tlsutil.Handshake(ctx, tc, 0); err != nil {
//		return err
//	}
//	logger.Info("tls", "version", tlsutil.VersionName(tc.ConnectionState().Version))
package tlsutil
