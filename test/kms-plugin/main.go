// Command cloak-kms-plugin is a Kubernetes KMS v2 plugin for cloak's tests: Kubernetes' own gRPC
// service code (k8s.io/kms/pkg/service, the server kube-apiserver's KMS v2 providers talk to)
// over AES-256-GCM keys held in a PKCS#11 token — SoftHSM2 here, any PKCS#11 module in
// principle. Keys are generated inside the token as sensitive and non-extractable; the plugin
// only ever asks the token to encrypt or decrypt with them.
//
// It plays the part of a vendor plugin (AWS, Azure, GCP, Vault, an HSM vendor's): the tests
// point both cloak's key service and the real kube-apiserver at it. Its kinds of failure are the
// ones those plugins have, each with its own gRPC status:
//
//	key destroyed in the token        NOT_FOUND
//	key disabled (CKA_DECRYPT false)  PERMISSION_DENIED
//	ciphertext that does not open     INVALID_ARGUMENT
//	plugin not running                (the client sees UNAVAILABLE: nothing listens)
//
// Rotation is what a cloud KMS does when its key rotates: a new key becomes the write key while
// the old ones still decrypt. Here the write key is the label named in --current-key-file,
// re-read at every Status and Encrypt, so that writing another label there (after `keygen`)
// rotates a running plugin.
//
//	cloak-kms-plugin serve   --socket PATH --current-key-file FILE [token flags]
//	cloak-kms-plugin keygen  --label LABEL [token flags]
//	cloak-kms-plugin disable|enable|destroy --label LABEL [token flags]
//	cloak-kms-plugin inspect --label LABEL [token flags]     (JSON: the key's attributes)
//
// Token flags: --module (default /usr/lib/softhsm/libsofthsm2.so), --token (label), --pin.
// SoftHSM2 finds its token directory through SOFTHSM2_CONF.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/pkcs11"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/kms/pkg/service"
)

const (
	ivBytes  = 12
	tagBits  = 128
	keyBytes = 32
	// Stored with every ciphertext and required back on Decrypt, so that the tests see
	// annotations make the round trip through whoever keeps the ciphertext.
	formatAnnotation = "format.kms-plugin.cloak.dev"
	formatVersion    = "aes-256-gcm-v1"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	verb, args := os.Args[1], os.Args[2:]
	var err error
	switch verb {
	case "serve":
		err = serve(args)
	case "keygen", "disable", "enable", "destroy", "inspect":
		err = keyCommand(verb, args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloak-kms-plugin %s: %v\n", verb, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cloak-kms-plugin serve|keygen|disable|enable|destroy|inspect [flags]")
	os.Exit(2)
}

type tokenFlags struct {
	module, token, pin string
}

func addTokenFlags(fs *flag.FlagSet) *tokenFlags {
	t := &tokenFlags{}
	fs.StringVar(&t.module, "module", "/usr/lib/softhsm/libsofthsm2.so", "PKCS#11 module")
	fs.StringVar(&t.token, "token", "cloak-kms", "token label")
	fs.StringVar(&t.pin, "pin", "", "user PIN")
	return t
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	tf := addTokenFlags(fs)
	socket := fs.String("socket", "", "unix socket to listen on (a path)")
	currentFile := fs.String("current-key-file", "", "file holding the label of the write key")
	timeout := fs.Duration("timeout", 10*time.Second, "gRPC connection timeout")
	_ = fs.Parse(args)
	if *socket == "" || *currentFile == "" {
		return errors.New("--socket and --current-key-file are required")
	}
	hsm, err := openToken(*tf)
	if err != nil {
		return err
	}
	defer hsm.close()
	plugin := &plugin{hsm: hsm, currentFile: *currentFile}
	if _, err := plugin.currentLabel(); err != nil {
		return err
	}
	// A socket left by a killed predecessor would make Listen fail.
	if err := os.Remove(*socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	grpcService := service.NewGRPCService(*socket, *timeout, plugin)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		grpcService.Shutdown()
	}()
	served := make(chan error, 1)
	go func() { served <- grpcService.ListenAndServe() }()
	// ListenAndServe listens before it serves; wait for the socket so that "listening" is true.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, err := os.Stat(*socket); err == nil {
			break
		}
		select {
		case err := <-served:
			return err
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("socket %s did not appear", *socket)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "cloak-kms-plugin: listening on %s\n", *socket)
	err = <-served
	_ = os.Remove(*socket)
	if err != nil && !strings.Contains(err.Error(), "closed") {
		return err
	}
	return nil
}

// plugin implements k8s.io/kms/pkg/service.Service.
type plugin struct {
	hsm         *token
	currentFile string
}

var _ service.Service = (*plugin)(nil)

func (p *plugin) currentLabel() (string, error) {
	data, err := os.ReadFile(p.currentFile)
	if err != nil {
		return "", fmt.Errorf("cannot read the current key label: %w", err)
	}
	label := strings.TrimSpace(string(data))
	if label == "" {
		return "", fmt.Errorf("%s names no key", p.currentFile)
	}
	return label, nil
}

func (p *plugin) Status(_ context.Context) (*service.StatusResponse, error) {
	label, err := p.currentLabel()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	healthz := "ok"
	if err := p.hsm.check(label); err != nil {
		healthz = err.Error()
	}
	return &service.StatusResponse{Version: "v2", Healthz: healthz, KeyID: label}, nil
}

func (p *plugin) Encrypt(_ context.Context, _ string, plaintext []byte) (*service.EncryptResponse, error) {
	label, err := p.currentLabel()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	ciphertext, err := p.hsm.encrypt(label, plaintext)
	if err != nil {
		return nil, err
	}
	return &service.EncryptResponse{
		Ciphertext:  ciphertext,
		KeyID:       label,
		Annotations: map[string][]byte{formatAnnotation: []byte(formatVersion)},
	}, nil
}

func (p *plugin) Decrypt(_ context.Context, _ string, req *service.DecryptRequest) ([]byte, error) {
	if got := string(req.Annotations[formatAnnotation]); got != formatVersion {
		return nil, status.Errorf(codes.InvalidArgument, "annotation %s is %q, want %q", formatAnnotation, got, formatVersion)
	}
	if req.KeyID == "" {
		return nil, status.Error(codes.InvalidArgument, "no key id")
	}
	return p.hsm.decrypt(req.KeyID, req.Ciphertext)
}

// token is one logged-in session on a PKCS#11 token. A session serves one caller at a time.
type token struct {
	mu      sync.Mutex
	ctx     *pkcs11.Ctx
	session pkcs11.SessionHandle
}

func openToken(tf tokenFlags) (*token, error) {
	ctx := pkcs11.New(tf.module)
	if ctx == nil {
		return nil, fmt.Errorf("cannot load PKCS#11 module %s", tf.module)
	}
	if err := ctx.Initialize(); err != nil {
		return nil, fmt.Errorf("C_Initialize: %w", err)
	}
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("C_GetSlotList: %w", err)
	}
	for _, slot := range slots {
		info, err := ctx.GetTokenInfo(slot)
		if err != nil || info.Label != tf.token {
			continue
		}
		session, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return nil, fmt.Errorf("C_OpenSession: %w", err)
		}
		if err := ctx.Login(session, pkcs11.CKU_USER, tf.pin); err != nil {
			return nil, fmt.Errorf("C_Login: %w", err)
		}
		return &token{ctx: ctx, session: session}, nil
	}
	return nil, fmt.Errorf("no token labelled %q", tf.token)
}

func (t *token) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.ctx.Logout(t.session)
	_ = t.ctx.CloseSession(t.session)
	_ = t.ctx.Finalize()
	t.ctx.Destroy()
}

var errKeyNotFound = errors.New("key not found")

// find returns the secret key object labelled `label`. Caller holds t.mu.
func (t *token) find(label string) (pkcs11.ObjectHandle, error) {
	template := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	if err := t.ctx.FindObjectsInit(t.session, template); err != nil {
		return 0, fmt.Errorf("C_FindObjectsInit: %w", err)
	}
	objects, _, err := t.ctx.FindObjects(t.session, 2)
	_ = t.ctx.FindObjectsFinal(t.session)
	if err != nil {
		return 0, fmt.Errorf("C_FindObjects: %w", err)
	}
	switch len(objects) {
	case 0:
		return 0, fmt.Errorf("%w: no key labelled %q in the token", errKeyNotFound, label)
	case 1:
		return objects[0], nil
	default:
		return 0, fmt.Errorf("more than one key labelled %q", label)
	}
}

// check answers whether `label` can be used for encryption now (Status' healthz).
func (t *token) check(label string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.ctx.GetSessionInfo(t.session); err != nil {
		return fmt.Errorf("token session: %w", err)
	}
	key, err := t.find(label)
	if err != nil {
		return err
	}
	attrs, err := t.ctx.GetAttributeValue(t.session, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, nil)})
	if err != nil {
		return fmt.Errorf("reading the key's attributes: %w", err)
	}
	if len(attrs[0].Value) != 1 || attrs[0].Value[0] != 1 {
		return fmt.Errorf("key %q is disabled", label)
	}
	return nil
}

func (t *token) encrypt(label string, plaintext []byte) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key, err := t.find(label)
	if err != nil {
		return nil, grpcError(err)
	}
	iv := make([]byte, ivBytes)
	if _, err := rand.Read(iv); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	// The key's label is the associated data: a ciphertext opens only under the key id it was
	// made with, whatever the caller claims.
	params := pkcs11.NewGCMParams(iv, []byte(label), tagBits)
	defer params.Free()
	if err := t.ctx.EncryptInit(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
		return nil, grpcError(fmt.Errorf("C_EncryptInit: %w", err))
	}
	sealed, err := t.ctx.Encrypt(t.session, plaintext)
	if err != nil {
		return nil, grpcError(fmt.Errorf("C_Encrypt: %w", err))
	}
	return append(iv, sealed...), nil
}

func (t *token) decrypt(label string, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < ivBytes+tagBits/8 {
		return nil, status.Errorf(codes.InvalidArgument, "ciphertext of %d bytes is too short", len(ciphertext))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	key, err := t.find(label)
	if err != nil {
		return nil, grpcError(err)
	}
	params := pkcs11.NewGCMParams(ciphertext[:ivBytes], []byte(label), tagBits)
	defer params.Free()
	if err := t.ctx.DecryptInit(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
		return nil, grpcError(fmt.Errorf("C_DecryptInit: %w", err))
	}
	plaintext, err := t.ctx.Decrypt(t.session, ciphertext[ivBytes:])
	if err != nil {
		// SoftHSM2 reports a failed GCM tag as CKR_GENERAL_ERROR, others as
		// CKR_ENCRYPTED_DATA_INVALID: after a successful init, either means "does not open".
		return nil, status.Errorf(codes.InvalidArgument, "the ciphertext does not open under key %q: %v", label, err)
	}
	return plaintext, nil
}

// grpcError gives each token failure the status a caller can act on.
func grpcError(err error) error {
	var rv pkcs11.Error
	switch {
	case errors.Is(err, errKeyNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.As(err, &rv) && rv == pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED:
		return status.Error(codes.PermissionDenied, "the key is disabled for this operation: "+err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

func keyCommand(verb string, args []string) error {
	fs := flag.NewFlagSet(verb, flag.ExitOnError)
	tf := addTokenFlags(fs)
	label := fs.String("label", "", "the key's label")
	_ = fs.Parse(args)
	if *label == "" {
		return errors.New("--label is required")
	}
	t, err := openToken(*tf)
	if err != nil {
		return err
	}
	defer t.close()
	t.mu.Lock()
	defer t.mu.Unlock()
	if verb == "keygen" {
		if _, err := t.find(*label); err == nil {
			return fmt.Errorf("a key labelled %q exists", *label)
		}
		template := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, keyBytes),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, *label),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			// Never leaves the token: not readable, not wrappable.
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		}
		_, err := t.ctx.GenerateKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, template)
		return err
	}
	key, err := t.find(*label)
	if err != nil {
		return err
	}
	switch verb {
	case "disable", "enable":
		on := verb == "enable"
		return t.ctx.SetAttributeValue(t.session, key, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, on),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, on),
		})
	case "destroy":
		return t.ctx.DestroyObject(t.session, key)
	case "inspect":
		return inspect(t, key, *label)
	}
	return nil
}

func inspect(t *token, key pkcs11.ObjectHandle, label string) error {
	out := map[string]any{"label": label}
	for name, attr := range map[string]uint{
		"sensitive":        pkcs11.CKA_SENSITIVE,
		"extractable":      pkcs11.CKA_EXTRACTABLE,
		"alwaysSensitive":  pkcs11.CKA_ALWAYS_SENSITIVE,
		"neverExtractable": pkcs11.CKA_NEVER_EXTRACTABLE,
		"encrypt":          pkcs11.CKA_ENCRYPT,
		"decrypt":          pkcs11.CKA_DECRYPT,
	} {
		attrs, err := t.ctx.GetAttributeValue(t.session, key, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
		if err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		out[name] = len(attrs[0].Value) == 1 && attrs[0].Value[0] == 1
	}
	// The key's value must be refused, whoever asks.
	_, err := t.ctx.GetAttributeValue(t.session, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err == nil {
		out["valueReadError"] = nil
	} else {
		out["valueReadError"] = err.Error()
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
