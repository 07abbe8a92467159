package checks

import "github.com/maildirector/maildirector/internal/mailwire"

// managesieve runs the ManageSieve conversation: the greeting, capability
// lines ended by OK (RFC 5804 section 1.7), then LOGOUT, answered OK before
// the server closes (section 2.3). It returns the capabilities as "NAME"
// or "NAME value", the name upper-cased ("SIEVE fileinto reject ...").
func (s *session) managesieve() ([]string, error) {
	var caps []string
	for range maxLines {
		line, toks, err := s.readSieve("reading greeting")
		if err != nil {
			return nil, err
		}
		if c, ok := mailwire.ParseSieveCapability(toks); ok {
			caps = append(caps, c)
			continue
		}
		// A server that will not serve us says NO or BYE (section 1.3:
		// TRYLATER, for one): the check fails with its words.
		if r, ok := mailwire.ParseSieveResponse(toks); !ok || r.Status != "OK" {
			return nil, s.unexpected("greeting", line, `"OK"`)
		}
		if err := s.send(sendStep("LOGOUT"), "LOGOUT"); err != nil {
			return nil, err
		}
		line, toks, err = s.readSieve(replyStep("LOGOUT"))
		if err != nil {
			return nil, err
		}
		if r, ok := mailwire.ParseSieveResponse(toks); !ok || r.Status != "OK" {
			return nil, s.unexpected("LOGOUT", line, `"OK"`)
		}
		return caps, nil
	}
	return nil, s.fail("reading greeting", ErrTooManyLines)
}

// readSieve reads one ManageSieve line with its literals (at most maxLine
// octets in all) and splits it; a line that does not parse has no tokens.
func (s *session) readSieve(step string) (string, []mailwire.SieveToken, error) {
	line, err := mailwire.ReadSieveLine(s.r, maxLine)
	if err != nil {
		return "", nil, s.fail(step, err)
	}
	toks, _ := mailwire.ParseSieveLine(line)
	return line, toks, nil
}
