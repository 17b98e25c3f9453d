package api

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeyError is a setting the REST API (or its client) cannot work with: a
// certificate or key that does not load, a CA file without certificates,
// an allowlist entry that does not resolve, a listen address in use. Key is
// the configuration key to fix ("restapi.certfile").
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }

func (e *KeyError) Unwrap() error { return e.Err }

func keyErrorf(key, format string, args ...any) *KeyError {
	return &KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// keyFileKey is the key that names the private key's file: keyfile, or
// certfile when the key lives in the certificate's file.
func keyFileKey(keyFile string) string {
	if keyFile == "" {
		return "certfile"
	}
	return "keyfile"
}

// pemTypeEncryptedPKCS8 is the PEM type of a PKCS#8 private key encrypted
// with a password (PBES2).
const pemTypeEncryptedPKCS8 = "ENCRYPTED PRIVATE KEY"

// LoadKeyPair loads a certificate and its private key for section
// ("restapi" or "ctl"), as Patroni's certfile, keyfile and keyfile_password:
// keyFile may be empty when certFile holds the key too, and a key encrypted
// with legacy PEM encryption ("Proc-Type: 4,ENCRYPTED", what
// `openssl rsa -aes256` and `openssl ec -aes256` write) is decrypted with
// password. Encrypted PKCS#8 keys ("ENCRYPTED PRIVATE KEY") are refused
// with an error that says how to convert them: the standard library does
// not read them, and the one maintained module that does would bring a
// large dependency tree into the agent for it. Every error is a *KeyError
// naming the key to fix.
func LoadKeyPair(section, certFile, keyFile, password string) (tls.Certificate, error) {
	certKey, keyKey := section+".certfile", section+"."+keyFileKey(keyFile)
	if keyFile == "" {
		keyFile = certFile
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, &KeyError{Key: certKey, Err: err}
	}
	keyData := certPEM
	if keyFile != certFile {
		if keyData, err = os.ReadFile(keyFile); err != nil {
			return tls.Certificate{}, &KeyError{Key: keyKey, Err: err}
		}
	}
	block := privateKeyBlock(keyData)
	if block == nil {
		return tls.Certificate{}, keyErrorf(keyKey, "%s holds no PEM private key", keyFile)
	}
	passwordKey := section + ".keyfile_password"
	switch {
	case block.Type == pemTypeEncryptedPKCS8:
		return tls.Certificate{}, keyErrorf(keyKey, "%s is an encrypted PKCS#8 key (%q), which custos cannot decrypt; "+
			"convert it to legacy PEM encryption, which %s decrypts (`openssl pkey -in KEY -traditional -aes256 -out NEW`), "+
			"or store it unencrypted, readable by the agent's user alone", keyFile, pemTypeEncryptedPKCS8, passwordKey)
	case x509.IsEncryptedPEMBlock(block):
		// Deprecated in crypto/x509 for its weak key derivation, but it is
		// the format keyfile_password is for, and a key file readable by
		// the agent alone is the protection that counts.
		if password == "" {
			return tls.Certificate{}, keyErrorf(keyKey, "%s is encrypted: set %s", keyFile, passwordKey)
		}
		der, err := x509.DecryptPEMBlock(block, []byte(password))
		if err != nil {
			if errors.Is(err, x509.IncorrectPasswordError) {
				return tls.Certificate{}, keyErrorf(passwordKey, "wrong password for %s", keyFile)
			}
			return tls.Certificate{}, keyErrorf(passwordKey, "decrypting %s: %w", keyFile, err)
		}
		block = &pem.Block{Type: block.Type, Bytes: der}
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(block))
	if err != nil {
		if x509.IsEncryptedPEMBlock(privateKeyBlock(keyData)) {
			// Legacy PEM encryption has no integrity check: a wrong
			// password may decrypt to garbage instead of failing.
			return tls.Certificate{}, keyErrorf(passwordKey, "%s does not decrypt to a key matching %s (wrong password?): %w", keyFile, certFile, err)
		}
		return tls.Certificate{}, keyErrorf(certKey, "%s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// privateKeyBlock returns the first PEM block of data that holds a private
// key, nil when there is none.
func privateKeyBlock(data []byte) *pem.Block {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil
		}
		if block.Type == "PRIVATE KEY" || strings.HasSuffix(block.Type, " PRIVATE KEY") {
			return block
		}
	}
}
