package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// TestRedisTLS: rediss:// URLs work against a TLS-only redis-server, and
// the server's certificate is verified (here against a test CA named by
// SSL_CERT_FILE; without it, jobd refuses the server).
func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := makeCert(t, dir, "ca", nil, nil)
	makeCert(t, dir, "server", ca, caKey)
	port := freePort(t)
	srv := exec.Command("redis-server", "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", filepath.Join(dir, "server.crt"), "--tls-key-file", filepath.Join(dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.crt"), "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", dir)
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := &redistest.Buffer{}
	srv.Stdout, srv.Stderr = out, out
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	poll(t, 5*time.Second, "the TLS port", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	url := "rediss://127.0.0.1:" + strconv.Itoa(port) + "/0"
	tests := []struct {
		name string
		env  []string
		code int
	}{
		{"verified against the CA", []string{"SSL_CERT_FILE=" + filepath.Join(dir, "ca.crt")}, 0},
		{"unknown CA is refused", nil, 69},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(jobdBin, "--redis", url, "lock", "k", "--", "true")
			cmd.Env = append(os.Environ(), tt.env...)
			b, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tt.code {
				t.Fatalf("exit %d, want %d: %s\nredis: %s", code, tt.code, b, out.String())
			}
			if tt.code == 69 && !strings.Contains(string(b), "certificate") {
				t.Errorf("reason does not mention the certificate: %s", b)
			}
		})
	}
	// The schedule file's redis.tls: TLS on a redis:// URL, verified
	// against ca_file, no environment needed.
	files := []struct {
		name, tls string
		code      int
	}{
		{"redis.tls with ca_file", "{ca_file: " + filepath.Join(dir, "ca.crt") + "}", 0},
		{"redis.tls without the CA is refused", "{}", 69},
	}
	for _, tt := range files {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "jobs.yaml")
			writeFile(t, cfg, "redis:\n  url: redis://127.0.0.1:"+strconv.Itoa(port)+"/0\n  tls: "+tt.tls+
				"\njobs:\n  - name: j\n    schedule: \"@daily\"\n    command: [\"true\"]\n")
			cmd := exec.Command(jobdBin, "-c", cfg, "lock", "k", "--", "true")
			b, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tt.code {
				t.Fatalf("exit %d, want %d: %s\nredis: %s", code, tt.code, b, out.String())
			}
			if tt.code == 69 && !strings.Contains(string(b), "certificate") {
				t.Errorf("reason does not mention the certificate: %s", b)
			}
		})
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// makeCert writes NAME.crt and NAME.key: a CA when parent is nil, else a
// server certificate for 127.0.0.1 signed by parent.
func makeCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "jobd test " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	} else {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name+".crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, filepath.Join(dir, name+".key"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestSentinelTLS: the schedule file's redis.sentinel form with redis.tls
// talks TLS to the sentinel and to the master it names (TLS-only ports,
// replication over TLS too), verified against ca_file: `jobd lock` runs
// and `jobd status` shows the master.
func TestSentinelTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := makeCert(t, dir, "ca", nil, nil)
	makeCert(t, dir, "server", ca, caKey)
	tlsArgs := []string{"--port", "0", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--tls-cert-file", filepath.Join(dir, "server.crt"), "--tls-key-file", filepath.Join(dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.crt"), "--tls-auth-clients", "no", "--tls-replication", "yes"}
	start := func(args ...string) {
		cmd := exec.Command("redis-server", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		out := &redistest.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	master, replica, sentinel := freePort(t), freePort(t), freePort(t)
	mdir, rdir := t.TempDir(), t.TempDir()
	start(append(tlsArgs, "--tls-port", strconv.Itoa(master), "--dir", mdir)...)
	start(append(tlsArgs, "--tls-port", strconv.Itoa(replica), "--dir", rdir, "--replicaof", "127.0.0.1", strconv.Itoa(master))...)
	conf := filepath.Join(dir, "sentinel.conf")
	writeFile(t, conf, "port 0\nbind 127.0.0.1\ntls-port "+strconv.Itoa(sentinel)+"\n"+
		"tls-cert-file "+filepath.Join(dir, "server.crt")+"\ntls-key-file "+filepath.Join(dir, "server.key")+"\n"+
		"tls-ca-cert-file "+filepath.Join(dir, "ca.crt")+"\ntls-auth-clients no\ntls-replication yes\n"+
		"dir "+dir+"\nsentinel monitor tlsm 127.0.0.1 "+strconv.Itoa(master)+" 1\n")
	start(conf, "--sentinel")
	cfg := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfg, "redis:\n  prefix: "+prefix(t)+"\n  sentinel:\n    master: tlsm\n    addrs: [\"127.0.0.1:"+strconv.Itoa(sentinel)+"\"]\n"+
		"  tls: {ca_file: "+filepath.Join(dir, "ca.crt")+"}\njobs:\n  - name: j\n    schedule: \"@daily\"\n    command: [\"true\"]\n")
	var last []byte
	poll(t, 15*time.Second, "jobd lock through the TLS sentinel", func() bool {
		cmd := exec.Command(jobdBin, "-c", cfg, "lock", "k", "--", "true")
		last, _ = cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode() == 0
	})
	cmd := exec.Command(jobdBin, "-c", cfg, "status", "--json")
	b, _ := cmd.Output() // exit 3: no replica is alive, which is true here
	if cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("status exit %d, want 3 (no replica): %s (last lock: %s)", cmd.ProcessState.ExitCode(), b, last)
	}
	if want := `"master":"127.0.0.1:` + strconv.Itoa(master) + `"`; !strings.Contains(strings.ReplaceAll(string(b), " ", ""), want) {
		t.Fatalf("status does not show %s: %s", want, b)
	}
}
