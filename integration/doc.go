// Package integration holds maildirector's end-to-end tests: the real
// binary, built once per run, in front of real Dovecot instances that the
// tests start on loopback ports with their own configuration directories
// (internal/dovecotlab), and stop again. Nothing here is faked: when Dovecot
// is missing the tests fail (scripts/deps.sh installs it; `make test` runs it
// first).
package integration
