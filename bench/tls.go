package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// The TLS suite: what a TLS handshake costs the proxy that terminates it,
// maildirector against HAProxy on the same certificate, both in front of
// the in-process fake IMAP server (backend.go). Paths:
//
//	haproxy  HAProxy mode tcp, bind ... ssl crt (implicit TLS only: HAProxy
//	         cannot do IMAP STARTTLS)
//	md-imap  maildirector's imap frontend, tls.mode implicit or starttls;
//	         it greets and answers LOGOUT itself (no login: no server dialled)
//	md-tcp   maildirector's tcp frontend, tls.mode implicit: like HAProxy, it
//	         dials the fake server for every client and relays its greeting
//
// One operation is connect, TLS handshake, greeting, LOGOUT, tagged OK,
// close (STARTTLS: connect, greeting, STARTTLS, handshake, LOGOUT), the
// same on every path. Rows: ECDSA P-256 and RSA 2048 certificates, each
// with full handshakes (no client session cache) and with resumption (each
// client keeps a tls.ClientSessionCache, seeded before the clock starts).
// The idle part opens -tls-n logged-in sessions over implicit TLS and reads
// the proxy's VmRSS and descriptors, as the imap suite does in plaintext.

const (
	certECDSA = "ecdsa"
	certRSA   = "rsa"

	tlsImplicit = "implicit"
	tlsSTARTTLS = "starttls"

	sessionFull    = "full"
	sessionResumed = "resumed"

	// tlsServerName is the certificates' DNS name and the clients' SNI.
	tlsServerName = "mail.bench.test"
)

var (
	tlsCerts    = []string{certECDSA, certRSA}
	tlsModes    = []string{tlsImplicit, tlsSTARTTLS}
	tlsSessions = []string{sessionFull, sessionResumed}
	// tlsPaths in run order; a row's paths are tlsPathsFor(kind, mode).
	tlsPaths = []string{pathHAProxy, pathMDIMAP, pathMDTCP}
	// tlsColumns are every path a TLS table can have, in column order.
	tlsColumns = []string{pathHAProxy, pathMDIMAP, pathMDTCP, pathMDIMAPOSSL, pathMDTCPOSSL}
)

// The paths of -maildirector-openssl: its imap and tcp frontends.
const (
	pathMDIMAPOSSL = "md-imap+ossl"
	pathMDTCPOSSL  = "md-tcp+ossl"
)

// tlsPathsFor are the paths of a row: IMAP STARTTLS only maildirector's
// imap frontend; RSA with implicit TLS the openssl build's frontends too,
// when there is one (ossl). The openssl build changes nothing else: it
// signs RSA keys only.
func tlsPathsFor(kind, mode string, ossl bool) []string {
	if mode == tlsSTARTTLS {
		return []string{pathMDIMAP}
	}
	if ossl && kind == certRSA {
		return []string{pathHAProxy, pathMDIMAP, pathMDTCP, pathMDIMAPOSSL, pathMDTCPOSSL}
	}
	return tlsPaths
}

// tlsRatioPairs are the TLS comparisons reported, numerator first.
var tlsRatioPairs = [][2]string{
	{pathMDIMAP, pathHAProxy},
	{pathMDTCP, pathHAProxy},
	{pathMDIMAPOSSL, pathHAProxy},
	{pathMDTCPOSSL, pathHAProxy},
}

// pairsWithin are the tlsRatioPairs whose paths are both in paths.
func pairsWithin(paths []string) [][2]string {
	var out [][2]string
	for _, pair := range tlsRatioPairs {
		if slices.Contains(paths, pair[0]) && slices.Contains(paths, pair[1]) {
			out = append(out, pair)
		}
	}
	return out
}

// benchCert is one certificate and its key in PEM files.
type benchCert struct {
	Cert     string `json:"cert"`     // PEM certificate
	Key      string `json:"key"`      // PEM PKCS #8 private key
	Combined string `json:"combined"` // both, for HAProxy's crt
}

// writeCert generates a self-signed certificate for tlsServerName with an
// ECDSA P-256 or RSA 2048 key into dir.
func writeCert(dir, kind string) (benchCert, error) {
	var key any
	var pub any
	switch kind {
	case certECDSA:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return benchCert{}, err
		}
		key, pub = k, &k.PublicKey
	case certRSA:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return benchCert{}, err
		}
		key, pub = k, &k.PublicKey
	default:
		return benchCert{}, fmt.Errorf("unknown certificate kind %q", kind)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return benchCert{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: tlsServerName},
		DNSNames:              []string{tlsServerName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return benchCert{}, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return benchCert{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	c := benchCert{
		Cert:     filepath.Join(dir, kind+".crt"),
		Key:      filepath.Join(dir, kind+".key"),
		Combined: filepath.Join(dir, kind+".pem"),
	}
	for path, b := range map[string][]byte{c.Cert: certPEM, c.Key: keyPEM, c.Combined: append(slices.Clone(certPEM), keyPEM...)} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return benchCert{}, err
		}
	}
	return c, nil
}

// haproxyTLSConfig is haproxyConfig with TLS terminated on the bind line
// (HAProxy 2.6 defaults: TLS 1.2 and 1.3, session tickets on, an SSL
// session cache of 20,000 entries).
func haproxyTLSConfig(listen, server, combinedPEM string, maxconn int) string {
	return fmt.Sprintf(`global
    maxconn %[3]d

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    maxconn %[3]d

frontend bench
    bind %[1]s ssl crt %[4]s
    default_backend server

backend server
    server server1 %[2]s
`, listen, server, maxconn, combinedPEM)
}

// mdFrontend is what maildirectorFrontendConfig generates: one frontend of
// protocol in front of one server, checks off.
type mdFrontend struct {
	protocol  string // imap, pop3, tcp
	listen    string
	server    string // host:port
	sendProxy string // "none", "v2", "v2-ssl"
	tlsMode   string // "" or "none", implicit, starttls
	cert      benchCert
	logLevel  string
}

// maildirectorFrontendConfig is maildirectorConfig with a chosen PROXY
// header to the server and, optionally, TLS to the clients.
func maildirectorFrontendConfig(f mdFrontend) string {
	host, port, _ := net.SplitHostPort(f.server)
	balance, extra := "user", "plaintext_login = \"allow\"\n"
	if f.protocol == "tcp" {
		balance, extra = "roundrobin", ""
	}
	if f.tlsMode != "" && f.tlsMode != "none" {
		extra += fmt.Sprintf("[frontend.bench.tls]\nmode = %q\n[[frontend.bench.tls.cert]]\ncert = %q\nkey = %q\n", f.tlsMode, f.cert.Cert, f.cert.Key)
	}
	return fmt.Sprintf(`[global]
log_level = %[5]q
maxconn = 0
shutdown_grace = "1s"
[global.timeouts]
idle = "1h"

# The bench's clients all come from one address.
[global.limits]
max_per_client = 0
max_rate = 0

[frontend.bench]
protocol = %[1]q
bind = [%[2]q]
backend = "server"
%[6]s
[backend.server]
balance = %[7]q
[backend.server.check]
type = "none"

[[backend.server.server]]
name = "server1"
address = %[3]q
ports = { %[1]s = %[4]s }
send_proxy = %[8]q
`, f.protocol, f.listen, host, port, f.logLevel, extra, balance, f.sendProxy)
}

// tlsClientConfig is every client's TLS configuration: the bench's
// certificates are self-signed, and verifying them is the client's cost,
// not the proxy's. X25519 only, so that both proxies do the same key
// exchange (Go's client would offer, and Go's server pick, the hybrid
// X25519MLKEM768, which HAProxy 2.6's OpenSSL does not have).
func tlsClientConfig(cache tls.ClientSessionCache) *tls.Config {
	return &tls.Config{
		ServerName:         tlsServerName,
		InsecureSkipVerify: true,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		ClientSessionCache: cache,
	}
}

// tlsCycle is one operation: connect, TLS (implicit, or after STARTTLS,
// RFC 9051 section 6.2.1), greeting, LOGOUT, tagged OK, close. It returns
// the TLS connection's state (whether it resumed a session, the version).
func tlsCycle(addr, mode string, cfg *tls.Config) (st tls.ConnectionState, err error) {
	raw, err := net.DialTimeout("tcp", addr, clientTimeout)
	if err != nil {
		return st, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(clientTimeout))
	if mode == tlsSTARTTLS {
		cl := &client{c: raw, r: bufio.NewReaderSize(raw, 512)}
		if err := cl.greeting(); err != nil {
			return st, err
		}
		if _, err := io.WriteString(raw, "s STARTTLS\r\n"); err != nil {
			return st, fmt.Errorf("send STARTTLS: %w", err)
		}
		if err := cl.tagged("s"); err != nil {
			return st, err
		}
		if cl.r.Buffered() > 0 {
			return st, fmt.Errorf("%d bytes after the STARTTLS reply, before the handshake", cl.r.Buffered())
		}
	}
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		return st, fmt.Errorf("TLS handshake: %w", err)
	}
	st = tc.ConnectionState()
	cl := &client{c: tc, r: bufio.NewReaderSize(tc, 512)}
	if mode == tlsImplicit {
		if err := cl.greeting(); err != nil {
			return st, err
		}
	}
	if _, err := io.WriteString(tc, "a LOGOUT\r\n"); err != nil {
		return st, fmt.Errorf("send logout: %w", err)
	}
	return st, cl.tagged("a")
}

// dialLoginTLS connects to addr with implicit TLS, reads the greeting and
// logs in as user, like dialLogin.
func dialLoginTLS(addr string, cfg *tls.Config, user string) (*client, error) {
	raw, err := net.DialTimeout("tcp", addr, clientTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	raw.SetDeadline(time.Now().Add(clientTimeout))
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	cl := &client{c: tc, r: bufio.NewReaderSize(tc, 4096)}
	if err := cl.login(user); err != nil {
		tc.Close()
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	return cl, nil
}

// TLSRun is one measurement of one row on one path.
type TLSRun struct {
	Cert    string `json:"cert"`
	Mode    string `json:"mode"`
	Session string `json:"session"` // full or resumed
	Path    string `json:"path"`
	Workers int    `json:"workers"`
	Done    int    `json:"done"`
	Failed  int    `json:"failed"`
	// Resumed counts the done operations whose handshake resumed a session.
	Resumed int `json:"resumed"`
	// Version is the TLS version the last handshake negotiated.
	Version    string  `json:"tls_version,omitempty"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"handshakes_per_s"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	ProxyCPU   float64 `json:"proxy_cpu_seconds,omitempty"`
	CPUus      float64 `json:"proxy_cpu_us_per_handshake,omitempty"`
	FirstError string  `json:"first_error,omitempty"`
	// AllPerSecond and AllCPUus hold every repetition in run order; the
	// fields above are the median one's (by rate).
	AllPerSecond []float64 `json:"all_handshakes_per_s,omitempty"`
	AllCPUus     []float64 `json:"all_cpu_us,omitempty"`
}

// ResumedShare is the share of done operations that resumed.
func (r TLSRun) ResumedShare() float64 {
	if r.Done == 0 {
		return 0
	}
	return float64(r.Resumed) / float64(r.Done)
}

// measureTLS has workers clients run tlsCycle against addr until count
// operations are done or limit passes. With resume each client keeps its
// own session cache, seeded by one operation before the clock starts. pid
// (0: none) is charged the CPU time it used meanwhile.
func measureTLS(addr string, pid, workers, count int, limit time.Duration, mode string, resume bool) TLSRun {
	res := TLSRun{Mode: mode, Workers: workers}
	cfgs := make([]*tls.Config, workers)
	for i := range cfgs {
		if !resume {
			cfgs[i] = tlsClientConfig(nil)
			continue
		}
		cfgs[i] = tlsClientConfig(tls.NewLRUClientSessionCache(4))
		if _, err := tlsCycle(addr, mode, cfgs[i]); err != nil {
			res.FirstError = "seeding the session cache: " + err.Error()
			return res
		}
	}
	lat := make([]time.Duration, count)
	ok := make([]bool, count)
	var next, failed, resumed atomic.Int64
	var firstErr, version atomic.Value
	var before procStats
	if pid > 0 {
		before, _ = readProcStats(pid)
	}
	start := time.Now()
	deadline := start.Add(limit)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				t0 := time.Now()
				st, err := tlsCycle(addr, mode, cfgs[w])
				lat[i] = time.Since(t0)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok[i] = true
				version.Store(tls.VersionName(st.Version))
				if st.DidResume {
					resumed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	if pid > 0 {
		if after, err := readProcStats(pid); err == nil {
			res.ProxyCPU = (after.CPU - before.CPU).Seconds()
		}
	}
	var good []time.Duration
	for i := range lat {
		if ok[i] {
			good = append(good, lat[i])
		}
	}
	res.Done = len(good)
	res.Failed = int(failed.Load())
	res.Resumed = int(resumed.Load())
	res.Version, _ = version.Load().(string)
	res.PerSecond = float64(res.Done) / res.Seconds
	slices.Sort(good)
	res.P50ms = percentile(good, 50)
	res.P99ms = percentile(good, 99)
	if res.Done > 0 && pid > 0 {
		res.CPUus = res.ProxyCPU * 1e6 / float64(res.Done)
	}
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	return res
}

// medianTLS returns the run with the median rate, every run's rate and
// CPU attached in run order.
func medianTLS(runs []TLSRun) TLSRun {
	res, all := medianRun(runs, func(r TLSRun) float64 { return r.PerSecond })
	res.AllPerSecond, res.AllCPUus = all, nil
	for _, r := range runs {
		res.AllCPUus = append(res.AllCPUus, r.CPUus)
	}
	return res
}

// TLSIdle is the idle-session cost on one path.
type TLSIdle struct {
	Path  string      `json:"path"`
	PID   int         `json:"pid"`
	Idle  *IdleResult `json:"idle,omitempty"`
	Error string      `json:"error,omitempty"`
}

// TLSReport is the TLS suite of one run.
type TLSReport struct {
	Workers int      `json:"workers"`
	Limit   string   `json:"time_limit"`
	Repeat  int      `json:"repeat"`
	Runs    []TLSRun `json:"runs"` // the median run of each row and path
	// Ratios maps "CERT MODE SESSION A/B" to metric to ratio.
	Ratios map[string]Ratios `json:"ratios"`
	// Paired maps "CERT MODE SESSION A/B" to the CPU-per-handshake ratio
	// of each repetition, whose paths ran one after the other.
	Paired map[string][]float64 `json:"paired_cpu_ratios"`
	Idle   []TLSIdle            `json:"idle,omitempty"`
	// IdleRatios maps "A/B" to metric to ratio for the idle sessions.
	IdleRatios map[string]Ratios `json:"idle_ratios,omitempty"`
	Errors     map[string]string `json:"errors,omitempty"`
	Notes      []string          `json:"notes"`
}

// tlsRowKey names a row: "ecdsa implicit full".
func tlsRowKey(cert, mode, session string) string { return cert + " " + mode + " " + session }

// runTLS runs the TLS suite.
func runTLS(o options, dir string, progress io.Writer) *TLSReport {
	rep := &TLSReport{Workers: o.tlsClients, Limit: o.tlsTime.String(), Repeat: o.tlsRepeat, Errors: make(map[string]string)}
	rep.Notes = []string{
		"TLS paths: haproxy = mode tcp, bind ... ssl crt (HAProxy 2.6 defaults); md-imap = maildirector's imap frontend with tls.mode implicit or starttls; md-tcp = its tcp frontend with tls.mode implicit; all in front of the in-process fake IMAP server, on the same certificate",
		"one handshake = connect, TLS handshake, greeting, LOGOUT, tagged OK, close (STARTTLS: greeting, STARTTLS, OK, handshake, LOGOUT); haproxy and md-tcp dial the fake server for every client and relay its greeting, md-imap greets and answers LOGOUT itself (no login, so no server is dialled)",
		"STARTTLS: HAProxy cannot do IMAP STARTTLS, so those rows have maildirector alone, with its CPU per handshake and no ratio",
		"md-imap+ossl, md-tcp+ossl (RSA rows, implicit TLS; with -maildirector-openssl): the same frontends in a build with the openssl tag (make build-openssl), whose RSA signatures are the system libcrypto's (internal/rsasign); ECDSA handshakes do not change in it",
		"clients: TLS 1.3 as both negotiate, X25519 only (the same key exchange on both proxies), no certificate verification (the client's cost, not the proxy's), SNI " + tlsServerName + "; full = no client session cache; resumed = each client keeps a tls.ClientSessionCache seeded before the clock starts, and resumed % says how many handshakes did resume",
		"proxy CPU µs/handshake is the proxy's utime+stime over the run per completed operation; rows are the median of -tls-repeat runs by rate, the paths taking turns in an order rotated per repetition; the per-repetition CPU ratios show how stable a ratio is",
		"everything shares this machine's CPUs (clients, fake server, proxy): compare ratios, not absolutes",
	}
	certs := make(map[string]benchCert)
	for _, kind := range tlsCerts {
		c, err := writeCert(dir, kind)
		if err != nil {
			rep.Errors[kind] = err.Error()
			return rep
		}
		certs[kind] = c
	}
	be, err := startBackend("127.0.0.1:0")
	if err != nil {
		rep.Errors["backend"] = err.Error()
		return rep
	}
	defer be.Close()

	// A proxy per certificate, mode and path: "ecdsa implicit md-imap".
	procs := make(map[string]*proxyProc)
	for _, kind := range tlsCerts {
		for _, mode := range tlsModes {
			for _, path := range tlsPathsFor(kind, mode, o.maildirectorOpenSSL != "") {
				key := kind + " " + mode + " " + path
				proc, err := startTLSProxy(o, dir, kind, mode, path, certs[kind], be.Addr())
				if err != nil {
					rep.Errors[key] = err.Error()
					fmt.Fprintf(progress, "bench: tls %s: %v\n", key, err)
					continue
				}
				defer proc.stop()
				procs[key] = proc
			}
		}
	}
	// Warm up: the first handshakes create what every later one shares.
	for key, proc := range procs {
		mode := strings.Fields(key)[1]
		for range 8 {
			if _, err := tlsCycle(proc.addr, mode, tlsClientConfig(nil)); err != nil {
				rep.Errors[key] = "warm-up: " + err.Error()
				delete(procs, key)
				break
			}
		}
	}

	// Idle sessions first, on fresh proxies (ECDSA, implicit TLS).
	if o.tlsN > 0 {
		for _, path := range tlsPaths {
			proc, ok := procs[certECDSA+" "+tlsImplicit+" "+path]
			if !ok {
				continue
			}
			fmt.Fprintf(progress, "bench: tls %s: %d idle sessions\n", path, o.tlsN)
			ti := TLSIdle{Path: path, PID: proc.pid()}
			time.Sleep(o.settle)
			cfg := tlsClientConfig(nil)
			idle, err := measureIdleDial(func() (*client, error) { return dialLoginTLS(proc.addr, cfg, "idle") }, proc.pid(), o.tlsN, o.settle, o.extra)
			ti.Idle = &idle
			if err != nil {
				ti.Error = err.Error()
			}
			waitFDs(proc.pid(), idle.Later.FDs-2*idle.Sessions+4, 15*time.Second)
			rep.Idle = append(rep.Idle, ti)
		}
		rep.IdleRatios = tlsIdleRatios(rep.Idle)
	}

	runs := make(map[string][]TLSRun) // row path → every repetition
	for r := range o.tlsRepeat {
		for _, kind := range tlsCerts {
			for _, mode := range tlsModes {
				for _, session := range tlsSessions {
					order := slices.Clone(tlsPathsFor(kind, mode, o.maildirectorOpenSSL != ""))
					for range r % len(order) {
						order = append(order[1:], order[0])
					}
					for _, path := range order {
						proc, ok := procs[kind+" "+mode+" "+path]
						if !ok {
							continue
						}
						row := tlsRowKey(kind, mode, session)
						fmt.Fprintf(progress, "bench: tls %s %s (run %d)\n", row, path, r+1)
						run := measureTLS(proc.addr, proc.pid(), o.tlsClients, profileCount, o.tlsTime, mode, session == sessionResumed)
						run.Cert, run.Session, run.Path = kind, session, path
						runs[row+" "+path] = append(runs[row+" "+path], run)
					}
				}
			}
		}
	}
	for _, kind := range tlsCerts {
		for _, mode := range tlsModes {
			for _, session := range tlsSessions {
				for _, path := range tlsPathsFor(kind, mode, o.maildirectorOpenSSL != "") {
					if all := runs[tlsRowKey(kind, mode, session)+" "+path]; len(all) > 0 {
						rep.Runs = append(rep.Runs, medianTLS(all))
					}
				}
			}
		}
	}
	rep.Ratios, rep.Paired = tlsRatios(rep.Runs)
	for _, kind := range tlsCerts {
		for _, mode := range tlsModes {
			for _, path := range tlsPathsFor(kind, mode, o.maildirectorOpenSSL != "") {
				proc := procs[kind+" "+mode+" "+path]
				proc.profileRun(o.profileDir, fmt.Sprintf("tls-%s-%s-full-%s", kind, mode, path), o.profileTime, func(d time.Duration) {
					measureTLS(proc.addr, 0, o.tlsClients, profileCount, d, mode, false)
				})
			}
		}
	}
	return rep
}

// startTLSProxy starts the proxy of path for one certificate and mode in
// front of server.
func startTLSProxy(o options, dir, kind, mode, path string, cert benchCert, server string) (*proxyProc, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("tls-%s-%s-%s", kind, mode, path)
	switch path {
	case pathHAProxy:
		return startHAProxy(o.haproxy, dir, name, listen, haproxyTLSConfig(listen, server, cert.Combined, haproxyMaxconn))
	case pathMDIMAP, pathMDTCP, pathMDIMAPOSSL, pathMDTCPOSSL:
		bin := o.maildirector
		if base, ok := strings.CutSuffix(path, "+ossl"); ok {
			bin, path = o.maildirectorOpenSSL, base
		}
		protocol := strings.TrimPrefix(path, "md-")
		cfg := maildirectorFrontendConfig(mdFrontend{protocol: protocol, listen: listen, server: server, sendProxy: "none", tlsMode: mode, cert: cert, logLevel: o.logLevel})
		return startMaildirector(bin, dir, name, listen, cfg, o.profileDir != "")
	}
	return nil, fmt.Errorf("unknown TLS path %q", path)
}

// tlsMetric is one row of the TLS table.
type tlsMetric struct {
	name    string
	get     func(TLSRun) (float64, bool)
	noRatio bool
}

var tlsMetrics = []tlsMetric{
	{name: "handshakes/s", get: func(r TLSRun) (float64, bool) { return measured(r.PerSecond, r.Done > 0) }},
	{name: "proxy CPU µs/handshake", get: func(r TLSRun) (float64, bool) { return measured(r.CPUus, r.Done > 0) }},
	{name: "p50 ms", get: func(r TLSRun) (float64, bool) { return measured(r.P50ms, r.Done > 0) }},
	{name: "resumed %", get: func(r TLSRun) (float64, bool) { return 100 * r.ResumedShare(), r.Done > 0 }, noRatio: true},
}

// tlsRatios computes the ratio pairs of every row, and the per-repetition
// CPU ratios.
func tlsRatios(runs []TLSRun) (map[string]Ratios, map[string][]float64) {
	by := make(map[string]TLSRun)
	for _, r := range runs {
		by[tlsRowKey(r.Cert, r.Mode, r.Session)+" "+r.Path] = r
	}
	ratios := make(map[string]Ratios)
	paired := make(map[string][]float64)
	for _, kind := range tlsCerts {
		for _, mode := range tlsModes {
			for _, session := range tlsSessions {
				row := tlsRowKey(kind, mode, session)
				for _, pair := range tlsRatioPairs {
					a, okA := by[row+" "+pair[0]]
					b, okB := by[row+" "+pair[1]]
					if !okA || !okB {
						continue
					}
					k := row + " " + pair[0] + "/" + pair[1]
					r := make(Ratios)
					for _, m := range tlsMetrics {
						if m.noRatio {
							continue
						}
						va, ok1 := m.get(a)
						vb, ok2 := m.get(b)
						if ok1 && ok2 && vb != 0 {
							r[m.name] = va / vb
						}
					}
					ratios[k] = r
					var p []float64
					for i := range min(len(a.AllCPUus), len(b.AllCPUus)) {
						if b.AllCPUus[i] > 0 {
							p = append(p, a.AllCPUus[i]/b.AllCPUus[i])
						}
					}
					paired[k] = p
				}
			}
		}
	}
	return ratios, paired
}

// tlsIdleMetrics are the idle rows, from the imap suite's.
var tlsIdleMetrics = []metric{metrics[0], metrics[1], metrics[2], metrics[3]}

// tlsIdleRatios compares each maildirector path's idle cost with HAProxy's.
func tlsIdleRatios(idle []TLSIdle) map[string]Ratios {
	paths := make([]PathResult, 0, len(idle))
	for _, ti := range idle {
		if ti.Error == "" {
			paths = append(paths, PathResult{Path: ti.Path, PID: ti.PID, Idle: ti.Idle})
		}
	}
	return pairRatios(byPath(paths), tlsRatioPairs, tlsIdleMetrics)
}

// printTLS is the table of the TLS suite: a row per certificate, mode,
// session and metric, a column per path, then the ratios; then the idle
// sessions.
func printTLS(w io.Writer, rep *TLSReport) {
	fmt.Fprintf(w, "TLS: %d clients, each run %s, median of %d runs\n\n", rep.Workers, rep.Limit, rep.Repeat)
	by := make(map[string]TLSRun)
	for _, r := range rep.Runs {
		by[tlsRowKey(r.Cert, r.Mode, r.Session)+" "+r.Path] = r
	}
	var cols []string // the paths measured, in column order
	for _, p := range tlsColumns {
		if slices.ContainsFunc(rep.Runs, func(r TLSRun) bool { return r.Path == p }) {
			cols = append(cols, p)
		}
	}
	pairs := pairsWithin(cols)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "cert\tmode\tsession\tmetric\t")
	for _, p := range cols {
		fmt.Fprintf(tw, "%s\t", p)
	}
	for _, pair := range pairs {
		fmt.Fprintf(tw, "%s/%s\t", pair[0], pair[1])
	}
	fmt.Fprintln(tw)
	for _, kind := range tlsCerts {
		for _, mode := range tlsModes {
			for _, session := range tlsSessions {
				row := tlsRowKey(kind, mode, session)
				for _, m := range tlsMetrics {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t", kind, mode, session, m.name)
					for _, p := range cols {
						if r, ok := by[row+" "+p]; ok {
							if v, ok := m.get(r); ok {
								fmt.Fprintf(tw, "%s\t", num(v))
								continue
							}
						}
						fmt.Fprint(tw, "-\t")
					}
					ratioCells(tw, rep.Ratios, row, pairs, m.name)
					fmt.Fprintln(tw)
				}
			}
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	versions := make(map[string][]string) // path → versions negotiated
	for _, r := range rep.Runs {
		if r.Version != "" && !slices.Contains(versions[r.Path], r.Version) {
			versions[r.Path] = append(versions[r.Path], r.Version)
		}
	}
	var vs []string
	for _, p := range cols {
		if len(versions[p]) > 0 {
			vs = append(vs, p+" "+strings.Join(versions[p], ", "))
		}
	}
	if len(vs) > 0 {
		fmt.Fprintf(w, "tls versions negotiated: %s\n", strings.Join(vs, "; "))
	}
	for _, r := range rep.Runs {
		if r.Failed > 0 || r.FirstError != "" {
			fmt.Fprintf(w, "tls %s %s: %d failed, first error: %s\n", tlsRowKey(r.Cert, r.Mode, r.Session), r.Path, r.Failed, r.FirstError)
		}
	}
	var keys []string
	for k := range rep.Paired {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if r := rep.Paired[k]; len(r) > 1 {
			all := make([]string, len(r))
			for i, v := range r {
				all[i] = fmt.Sprintf("%.2f", v)
			}
			fmt.Fprintf(w, "tls %s: CPU/handshake ratio of each repetition %s\n", k, strings.Join(all, " "))
		}
	}
	if len(rep.Idle) > 0 {
		fmt.Fprintf(w, "\nidle TLS sessions (ECDSA, implicit TLS, logged in):\n\n")
		paths := make([]PathResult, 0, len(rep.Idle))
		for _, ti := range rep.Idle {
			paths = append(paths, PathResult{Path: ti.Path, PID: ti.PID, Idle: ti.Idle})
		}
		byP := byPath(paths)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "metric\t")
		for _, p := range tlsPaths {
			fmt.Fprintf(tw, "%s\t", p)
		}
		for _, pair := range pairsWithin(tlsPaths) {
			fmt.Fprintf(tw, "%s/%s\t", pair[0], pair[1])
		}
		fmt.Fprintln(tw)
		for _, m := range tlsIdleMetrics {
			fmt.Fprintf(tw, "%s\t", m.name)
			for _, p := range tlsPaths {
				if v, ok := m.get(byP[p]); ok {
					fmt.Fprintf(tw, "%s\t", num(v))
				} else {
					fmt.Fprint(tw, "-\t")
				}
			}
			ratioCells(tw, rep.IdleRatios, "", pairsWithin(tlsPaths), m.name)
			fmt.Fprintln(tw)
		}
		tw.Flush()
		fmt.Fprintln(w)
		for _, ti := range rep.Idle {
			if ti.Idle != nil && ti.Idle.Later.RSSKiB > 0 {
				fmt.Fprintf(w, "tls idle %s: pid %d, %d sessions opened in %.1fs; VmRSS %d → %d → %d KiB, fds %d → %d\n",
					ti.Path, ti.PID, ti.Idle.Sessions, ti.Idle.OpenSeconds, ti.Idle.Before.RSSKiB, ti.Idle.Settled.RSSKiB, ti.Idle.Later.RSSKiB,
					ti.Idle.Before.FDs, ti.Idle.Settled.FDs)
			}
			if ti.Error != "" {
				fmt.Fprintf(w, "tls idle %s: ERROR %s\n", ti.Path, ti.Error)
			}
		}
	}
	var errKeys []string
	for k := range rep.Errors {
		errKeys = append(errKeys, k)
	}
	slices.Sort(errKeys)
	for _, k := range errKeys {
		fmt.Fprintf(w, "tls %s: ERROR %s\n", k, rep.Errors[k])
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
