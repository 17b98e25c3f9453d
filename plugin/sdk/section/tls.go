package section

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"github.com/custos-ha/custos/plugin/sdk"
)

// TLS holds the TLS keys of a section under Patroni's names. Config builds
// the client side of a connection from them; each problem is reported
// under the key that names the file (cacert, cert, key, key_password).
type TLS struct {
	// CACert is a PEM file of the CAs that sign the server's certificate;
	// empty means the system roots.
	CACert string
	// Cert is the client certificate (PEM). Key is its private key; when
	// empty, the key is looked for in Cert, as Patroni allows.
	Cert string
	Key  string
	// KeyPassword decrypts a Key encrypted the legacy OpenSSL way
	// (Proc-Type: 4,ENCRYPTED). An encrypted PKCS#8 key is refused: the Go
	// standard library cannot decrypt it.
	KeyPassword Secret
	// SkipVerify turns off the check of the server's certificate: the
	// operator's explicit choice (verify = false), never a default.
	SkipVerify bool
	// ServerName is the name the server's certificate must carry; empty
	// means the host dialled.
	ServerName string
}

// TLS decodes Patroni's names for a TLS client's files, cacert, cert and
// key, into o. A plugin that takes key_password (or verify) decodes it
// into o itself, so that a section accepts only the keys its plugin means.
func (d *Decoder) TLS(o *TLS) {
	d.String("cacert", &o.CACert)
	d.String("cert", &o.Cert)
	d.String("key", &o.Key)
	if o.Key != "" && o.Cert == "" {
		d.Add(d.Path("cert"), "must be set with key")
	}
}

// Config reads the files and returns the TLS configuration (TLS 1.2 or
// later), or a *sdk.ConfigError listing every file problem.
func (o TLS) Config() (*tls.Config, error) {
	errs := &sdk.ConfigError{}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.SkipVerify, ServerName: o.ServerName}
	if o.CACert != "" {
		data, err := os.ReadFile(o.CACert)
		if err != nil {
			errs.Add("cacert", "%v", err)
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(data) {
				errs.Add("cacert", "%s holds no PEM certificate", o.CACert)
			}
			cfg.RootCAs = pool
		}
	}
	if o.Cert != "" {
		pair, path, err := o.keyPair()
		if err != nil {
			errs.Add(path, "%v", err)
		} else {
			cfg.Certificates = []tls.Certificate{pair}
		}
	} else if o.KeyPassword != "" {
		errs.Add("key_password", "needs cert and key")
	}
	if err := errs.OrNil(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// keyPair loads the client certificate and its key, and says which key a
// failure belongs to.
func (o TLS) keyPair() (tls.Certificate, string, error) {
	certPEM, err := os.ReadFile(o.Cert)
	if err != nil {
		return tls.Certificate{}, "cert", err
	}
	keyFile, keyPEM := o.Key, certPEM
	if o.Key == "" {
		keyFile = o.Cert
	} else if keyPEM, err = os.ReadFile(o.Key); err != nil {
		return tls.Certificate{}, "key", err
	}
	block := privateKeyBlock(keyPEM)
	password := string(o.KeyPassword)
	decrypted := false
	switch {
	case block == nil:
		// Leave it to X509KeyPair to say what the file holds instead.
	case block.Type == "ENCRYPTED PRIVATE KEY":
		return tls.Certificate{}, "key", fmt.Errorf("%s is an encrypted PKCS#8 key, which is not supported: convert it (openssl pkey -in key.pem -aes256 -traditional) or decrypt it", keyFile)
	// Legacy PEM encryption is deprecated in Go but is what key_password
	// exists for (Patroni's clients hand it to OpenSSL the same way).
	case x509.IsEncryptedPEMBlock(block):
		if password == "" {
			return tls.Certificate{}, "key_password", fmt.Errorf("%s is encrypted and no key_password is set", keyFile)
		}
		der, err := x509.DecryptPEMBlock(block, []byte(password))
		if err != nil {
			return tls.Certificate{}, "key_password", fmt.Errorf("decrypting %s: %v", keyFile, err)
		}
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der})
		decrypted = true
	case password != "":
		return tls.Certificate{}, "key_password", fmt.Errorf("%s is not encrypted", keyFile)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	switch {
	case err == nil:
		return pair, "", nil
	case decrypted:
		// Legacy PEM encryption has no integrity check: a wrong password
		// may decrypt to garbage instead of failing.
		return tls.Certificate{}, "key_password", fmt.Errorf("%s does not decrypt to a key matching %s (wrong password?): %v", keyFile, o.Cert, err)
	case o.Key == "":
		return tls.Certificate{}, "key", fmt.Errorf("not set, and cert %s holds no usable private key: %v", o.Cert, err)
	default:
		return tls.Certificate{}, "cert", fmt.Errorf("loading client certificate %s with key %s: %v", o.Cert, o.Key, err)
	}
}

// privateKeyBlock returns the first PEM block holding a private key, nil
// when there is none.
func privateKeyBlock(data []byte) *pem.Block {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			return block
		}
	}
}
