package steps

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// The SCRAM-SHA-256 example of RFC 7677 section 3: user "user", password
// "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations. PostgreSQL
// stores SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
const (
	rfc7677Salt     = "W22ZaJ0SNY7soEsUEjb6gQ=="
	rfc7677Verifier = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

	// The exchange of RFC 7677 section 3, to check the verifier against
	// values printed in the RFC itself rather than recomputed.
	rfc7677AuthMessage = "n=user,r=rOprNGfwEbeRWgbNEkqO," +
		"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," +
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	rfc7677ClientProof     = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfc7677ServerSignature = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
)

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
	return b
}

func TestScramVerifierRFC7677(t *testing.T) {
	got, err := scramVerifier("pencil", mustB64(t, rfc7677Salt), 4096)
	if err != nil {
		t.Fatal(err)
	}
	if got != rfc7677Verifier {
		t.Errorf("scramVerifier =\n%s\nwant\n%s", got, rfc7677Verifier)
	}
}

// TestRFC7677VerifierAuthenticates checks the expected verifier the way a
// server uses it: the RFC's client proof must recover a ClientKey that
// hashes to StoredKey, and ServerKey must give the RFC's server signature.
func TestRFC7677VerifierAuthenticates(t *testing.T) {
	_, keys, _ := strings.Cut(strings.TrimPrefix(rfc7677Verifier, "SCRAM-SHA-256$"), "$")
	storedB64, serverB64, _ := strings.Cut(keys, ":")
	storedKey, serverKey := mustB64(t, storedB64), mustB64(t, serverB64)
	sign := func(key []byte) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(rfc7677AuthMessage))
		return h.Sum(nil)
	}

	clientSig := sign(storedKey)
	proof := mustB64(t, rfc7677ClientProof)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ clientSig[i]
	}
	if h := sha256.Sum256(clientKey); !hmac.Equal(h[:], storedKey) {
		t.Error("the RFC's ClientProof does not verify against StoredKey")
	}
	if got := base64.StdEncoding.EncodeToString(sign(serverKey)); got != rfc7677ServerSignature {
		t.Errorf("ServerSignature = %s, want %s", got, rfc7677ServerSignature)
	}
}

func TestScramMatches(t *testing.T) {
	tests := []struct {
		name     string
		stored   string
		password string
		want     bool
	}{
		{name: "right password", stored: rfc7677Verifier, password: "pencil", want: true},
		{name: "wrong password", stored: rfc7677Verifier, password: "pencil2"},
		{name: "empty password", stored: rfc7677Verifier, password: ""},
		{name: "empty stored (NULL rolpassword)", stored: "", password: "pencil"},
		{name: "md5 hash", stored: "md5" + strings.Repeat("0", 32), password: "pencil"},
		{name: "plain text", stored: "pencil", password: "pencil"},
		{name: "other mechanism", stored: strings.Replace(rfc7677Verifier, "SHA-256", "SHA-1", 1), password: "pencil"},
		{name: "prefix only", stored: "SCRAM-SHA-256$", password: "pencil"},
		{name: "no keys", stored: "SCRAM-SHA-256$4096:" + rfc7677Salt, password: "pencil"},
		{name: "no iteration count", stored: strings.Replace(rfc7677Verifier, "$4096:", "$", 1), password: "pencil"},
		{name: "iterations not a number", stored: strings.Replace(rfc7677Verifier, "$4096:", "$many:", 1), password: "pencil"},
		{name: "zero iterations", stored: strings.Replace(rfc7677Verifier, "$4096:", "$0:", 1), password: "pencil"},
		{name: "negative iterations", stored: strings.Replace(rfc7677Verifier, "$4096:", "$-1:", 1), password: "pencil"},
		{name: "other iteration count", stored: strings.Replace(rfc7677Verifier, "$4096:", "$4097:", 1), password: "pencil"},
		{name: "salt not base64", stored: strings.Replace(rfc7677Verifier, rfc7677Salt, "!!!!", 1), password: "pencil"},
		{name: "stored key changed", stored: strings.Replace(rfc7677Verifier, "$WG5d", "$XG5d", 1), password: "pencil"},
		{name: "server key changed", stored: strings.Replace(rfc7677Verifier, ":wfPL", ":xfPL", 1), password: "pencil"},
		{name: "trailing garbage", stored: rfc7677Verifier + "x", password: "pencil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scramMatches(tt.stored, tt.password); got != tt.want {
				t.Errorf("scramMatches(%q, %q) = %v, want %v", tt.stored, tt.password, got, tt.want)
			}
		})
	}
}

func TestNewScramVerifier(t *testing.T) {
	const password = "correct horse battery staple"
	a, err := newScramVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newScramVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	salt := func(v string) string {
		rest, ok := strings.CutPrefix(v, "SCRAM-SHA-256$4096:")
		if !ok {
			t.Fatalf("verifier %q does not start with SCRAM-SHA-256$4096:", v)
		}
		s, _, _ := strings.Cut(rest, "$")
		if n := len(mustB64(t, s)); n != 16 {
			t.Errorf("salt is %d bytes, want 16", n)
		}
		return s
	}
	if salt(a) == salt(b) {
		t.Errorf("two verifiers share the salt %s", salt(a))
	}
	for _, v := range []string{a, b} {
		if !scramMatches(v, password) {
			t.Errorf("scramMatches(%q, password) = false", v)
		}
		if scramMatches(v, password+"!") {
			t.Errorf("scramMatches(%q, wrong password) = true", v)
		}
	}
}
