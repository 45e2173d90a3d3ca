package lab

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ServiceClusterIPRange is the apiserver's --service-cluster-ip-range. These
// private ranges are only ever ClusterIPs, never traffic destinations.
const ServiceClusterIPRange = "10.96.0.0/16,fd00:10:96::/108"

// APIPortInNetns is where hosts reach the apiserver from inside their
// namespace (see KubeconfigIn).
const APIPortInNetns = 6443

// Cluster is etcd and kube-apiserver on loopback.
type Cluster struct {
	Dir             string
	URL             string // https://127.0.0.1:PORT
	AdminKubeconfig string // token user "admin" in system:masters
	Client          kubernetes.Interface
	RestConfig      *rest.Config

	env        *Env
	apiPort    int
	caPEM      []byte
	adminToken string
	etcd       *Process
	etcdURL    string
	apiArgs    []string

	mu         sync.Mutex
	apiserver  *Process
	forwarders map[*Host]*forwarder
	stopOnce   sync.Once
}

// StartCluster starts etcd and kube-apiserver in Env.Dir/cluster and waits
// until the apiserver is ready. It is stopped at Close.
func (e *Env) StartCluster(ctx context.Context) (*Cluster, error) {
	kas, err := KubeAPIServer(ctx)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.Dir, "cluster")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, env: e, forwarders: map[*Host]*forwarder{}}
	e.onClose(c.Stop)
	if err := c.startEtcd(ctx); err != nil {
		return nil, err
	}

	certPath, keyPath, caPEM, err := writeServingCert(dir)
	if err != nil {
		return nil, err
	}
	saPub, saKey, err := writeServiceAccountKey(dir)
	if err != nil {
		return nil, err
	}
	c.caPEM = caPEM
	c.adminToken = randomToken()
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(c.adminToken+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return nil, err
	}
	// A free port can be taken by someone else before the apiserver binds
	// it (other test binaries run in parallel): try a few.
	for attempt := 1; ; attempt++ {
		if c.apiPort, err = freePort(); err != nil {
			return nil, err
		}
		c.URL = "https://127.0.0.1:" + strconv.Itoa(c.apiPort)
		c.apiArgs = []string{kas,
			"--etcd-servers=" + c.etcdURL,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(c.apiPort),
			"--cert-dir=" + dir,
			"--tls-cert-file=" + certPath,
			"--tls-private-key-file=" + keyPath,
			"--token-auth-file=" + tokenFile,
			"--authorization-mode=Node,RBAC",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + saPub,
			"--service-account-signing-key-file=" + saKey,
			"--service-cluster-ip-range=" + ServiceClusterIPRange,
			"--enable-admission-plugins=NodeRestriction",
			// Lab Nodes have no kubelet and no node lifecycle controller: the
			// not-ready taint this plugin adds at creation would never go away.
			"--disable-admission-plugins=TaintNodesByCondition",
			// The kubernetes Service's endpoint would be 127.0.0.1, which
			// Endpoints validation refuses; nothing in the lab needs it.
			"--endpoint-reconciler-type=none",
			"--profiling=false",
			"-v=1",
		}
		err = c.StartAPIServer(ctx)
		if err == nil {
			break
		}
		if attempt == 3 || !errors.Is(err, errPortTaken) {
			return nil, err
		}
	}
	c.RestConfig = &rest.Config{
		Host:            c.URL,
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
		QPS:             500,
		Burst:           1000,
	}
	if c.Client, err = kubernetes.NewForConfig(c.RestConfig); err != nil {
		return nil, err
	}
	if c.AdminKubeconfig, err = c.writeKubeconfig("admin.kubeconfig", c.URL, "admin", c.adminToken); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := c.tryStartEtcd(ctx)
		if err == nil || attempt == 3 || !errors.Is(err, errPortTaken) {
			return err
		}
	}
}

func (c *Cluster) tryStartEtcd(ctx context.Context) error {
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	c.etcdURL = "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	start := time.Now()
	p, err := startProcess(c.Dir, "etcd", []string{"etcd",
		"--name=lab",
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=lab=" + peerURL,
		"--listen-client-urls=" + c.etcdURL,
		"--advertise-client-urls=" + c.etcdURL,
	})
	if err != nil {
		return err
	}
	c.env.track(p)
	c.etcd = p
	err = waitHTTP(ctx, p, http.DefaultClient, c.etcdURL+"/health", "", 30*time.Second)
	if err != nil {
		p.Stop(5 * time.Second)
		if portTaken(p) {
			os.RemoveAll(filepath.Join(c.Dir, "etcd"))
			return fmt.Errorf("etcd: %w", errPortTaken)
		}
		return fmt.Errorf("etcd did not become healthy (log: %s): %w", p.LogPath, err)
	}
	c.logf("etcd ready at %s in %s", c.etcdURL, time.Since(start).Round(time.Millisecond))
	return nil
}

// StartAPIServer starts kube-apiserver (again, on the same port, after
// StopAPIServer) and waits until /readyz answers ok.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver != nil && !c.apiserver.Exited() {
		return fmt.Errorf("kube-apiserver is already running")
	}
	start := time.Now()
	p, err := startProcess(c.Dir, "kube-apiserver", c.apiArgs)
	if err != nil {
		return err
	}
	c.env.track(p)
	c.apiserver = p
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer client.CloseIdleConnections()
	if err := waitHTTP(ctx, p, client, c.URL+"/readyz", c.adminToken, 2*time.Minute); err != nil {
		p.Stop(5 * time.Second)
		if portTaken(p) {
			return fmt.Errorf("kube-apiserver on %s: %w", c.URL, errPortTaken)
		}
		return fmt.Errorf("kube-apiserver did not become ready (log: %s): %w", p.LogPath, err)
	}
	c.logf("kube-apiserver ready at %s in %s", c.URL, time.Since(start).Round(time.Millisecond))
	return nil
}

// StopAPIServer stops kube-apiserver (SIGTERM) and leaves etcd running, for
// outage tests. Forwarders into host namespaces keep listening.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	p := c.apiserver
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	start := time.Now()
	if err := p.Stop(30 * time.Second); err != nil {
		return err
	}
	c.logf("kube-apiserver stopped in %s", time.Since(start).Round(time.Millisecond))
	return nil
}

// APIServer returns the current kube-apiserver process.
func (c *Cluster) APIServer() *Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.apiserver
}

// Stop stops the forwarders, kube-apiserver and etcd.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		fws := c.forwarders
		c.forwarders = map[*Host]*forwarder{}
		p := c.apiserver
		c.mu.Unlock()
		for _, fw := range fws {
			fw.Close()
		}
		if p != nil {
			p.Stop(10 * time.Second)
		}
		if c.etcd != nil {
			c.etcd.Stop(10 * time.Second)
		}
	})
}

func (c *Cluster) logf(format string, args ...any) {
	f, err := os.OpenFile(filepath.Join(c.Dir, "lab.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, time.Now().Format(time.RFC3339Nano)+" "+format+"\n", args...)
}

// waitHTTP polls url until it answers 200, failing early if p exits.
func waitHTTP(ctx context.Context, p *Process, client *http.Client, url, token string, timeout time.Duration) error {
	return Eventually(ctx, timeout, 100*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("%s exited: %v; last output:\n%s", p.Name, p.waitErr, p.tail(20))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
		}
		return nil
	})
}

var errPortTaken = errors.New("port already in use")

// portTaken reports whether a process that ended did so because its port was
// taken.
func portTaken(p *Process) bool {
	return p.Exited() && strings.Contains(p.Logs(), "address already in use")
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomToken() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// writeKubeconfig writes a kubeconfig for a token user into the cluster dir.
func (c *Cluster) writeKubeconfig(file, server, user, token string) (string, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: c.caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: user}
	cfg.CurrentContext = "lab"
	path := filepath.Join(c.Dir, file)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return path, nil
}

// KubeconfigIn returns a kubeconfig (user admin) for processes inside h's
// namespace: it points at 127.0.0.1:6443 there, which a forwarder run by the
// lab connects to the apiserver's loopback port in the root namespace. The
// forwarder survives apiserver restarts.
func (c *Cluster) KubeconfigIn(h *Host) (string, error) {
	if err := c.ensureForwarder(h); err != nil {
		return "", err
	}
	return c.writeKubeconfig("admin-"+h.Name+".kubeconfig", c.inNetnsURL(), "admin", c.adminToken)
}

func (c *Cluster) inNetnsURL() string {
	return "https://127.0.0.1:" + strconv.Itoa(APIPortInNetns)
}

func (c *Cluster) ensureForwarder(h *Host) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.forwarders[h]; ok {
		return nil
	}
	fw, err := startForwarder(h.Netns, "127.0.0.1:"+strconv.Itoa(APIPortInNetns), "127.0.0.1:"+strconv.Itoa(c.apiPort))
	if err != nil {
		return fmt.Errorf("forwarding the apiserver into host %q: %w", h.Name, err)
	}
	c.forwarders[h] = fw
	// The listener pins the namespace: close it when the host goes.
	h.onClose(func() {
		c.mu.Lock()
		delete(c.forwarders, h)
		c.mu.Unlock()
		fw.Close()
	})
	return nil
}

// ServiceAccountKubeconfig creates namespace/name's ServiceAccount (and the
// namespace) if missing and writes a kubeconfig authenticating with a
// TokenRequest token for it, for running binaries with only the RBAC they
// are meant to have.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name string) (string, error) {
	token, err := c.serviceAccountToken(ctx, namespace, name)
	if err != nil {
		return "", err
	}
	return c.writeKubeconfig("sa-"+namespace+"-"+name+".kubeconfig", c.URL, namespace+"-"+name, token)
}

// ServiceAccountKubeconfigIn is ServiceAccountKubeconfig for processes inside
// h's namespace (see KubeconfigIn).
func (c *Cluster) ServiceAccountKubeconfigIn(ctx context.Context, h *Host, namespace, name string) (string, error) {
	if err := c.ensureForwarder(h); err != nil {
		return "", err
	}
	token, err := c.serviceAccountToken(ctx, namespace, name)
	if err != nil {
		return "", err
	}
	return c.writeKubeconfig("sa-"+namespace+"-"+name+"-"+h.Name+".kubeconfig", c.inNetnsURL(), namespace+"-"+name, token)
}

func (c *Cluster) serviceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	if err := c.EnsureNamespace(ctx, namespace); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if _, err := c.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating service account %s/%s: %w", namespace, name, err)
	}
	ttl := int64((24 * time.Hour).Seconds())
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for service account %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// EnsureNamespace creates a namespace if it does not exist. (The lab runs no
// kube-controller-manager: deleted namespaces stay Terminating.)
func (c *Cluster) EnsureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// UninitializedTaint is the taint the cloud node controller removes once the
// provider has initialised a Node.
const UninitializedTaint = "node.cloudprovider.kubernetes.io/uninitialized"

// CreateNode creates a Node the way a kubelet would register it: Ready, with
// addrs as InternalIP addresses and the given labels; with uninitialized it
// carries the taint a kubelet started with --cloud-provider=external sets.
func (c *Cluster) CreateNode(ctx context.Context, name string, addrs []netip.Addr, labels map[string]string, uninitialized bool) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		corev1.LabelHostname: name,
		corev1.LabelOSStable: "linux",
	}}}
	for k, v := range labels {
		node.Labels[k] = v
	}
	if uninitialized {
		node.Spec.Taints = []corev1.Taint{{Key: UninitializedTaint, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
	}
	now := metav1.Now()
	node.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "lab node", LastHeartbeatTime: now, LastTransitionTime: now,
	}}
	for _, a := range addrs {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a.String()})
	}
	node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	created, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	// Status sent with a create is kept for Nodes today; make sure anyway.
	if len(created.Status.Conditions) == 0 || len(created.Status.Addresses) != len(node.Status.Addresses) {
		created.Status = node.Status
		if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("setting the status of node %s: %w", name, err)
		}
	}
	return nil
}

// RestConfigFromKubeconfig loads a kubeconfig file such as the ones the
// Cluster writes.
func RestConfigFromKubeconfig(path string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// ClientFromKubeconfig returns a clientset for a kubeconfig file.
func ClientFromKubeconfig(path string) (kubernetes.Interface, error) {
	cfg, err := RestConfigFromKubeconfig(path)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// SetAPIReachable cuts h off from the API server (false) or restores its
// path (true), as a blackhole route to the API server's address inside h's
// namespace would: connections open at the time stall instead of failing,
// new ones get no answer, and both resume once restored. h must have a
// kubeconfig from KubeconfigIn or ServiceAccountKubeconfigIn.
func (c *Cluster) SetAPIReachable(h *Host, reachable bool) error {
	c.mu.Lock()
	fw, ok := c.forwarders[h]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("host %q has no path to the API server to cut", h.Name)
	}
	fw.setCut(!reachable)
	c.logf("API server %s for host %s", map[bool]string{true: "reachable", false: "cut off"}[reachable], h.Name)
	return nil
}
