// Package archtest holds the test that keeps the import rules of
// ARCHITECTURE.md: imports point toward the leaves (director, checks,
// tlsutil, config), the engine never imports a frontend or the director,
// and frontends never import each other.
package archtest
