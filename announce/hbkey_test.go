package announce

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The agent signs with exactly the key it created. Many times: a raw
// random key began or ended with a whitespace byte (which keysFrom trims)
// one time in twenty, and the agent then signed with a shorter key.
func TestEnsureHeartbeatSecretCreatesAKey(t *testing.T) {
	for range 200 {
		client := fake.NewClientset()
		k, err := ensureHeartbeatSecret(context.Background(), client, "kube-system")
		if err != nil {
			t.Fatal(err)
		}
		s, err := client.CoreV1().Secrets("kube-system").Get(context.Background(), HeartbeatSecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Data["key"]) != 2*heartbeatKeyBytes || !bytes.Equal(s.Data["key"], k.Sign) || len(k.Accepted) != 0 {
			t.Fatalf("created key %q, agent signs with %q, accepts %d more", s.Data["key"], k.Sign, len(k.Accepted))
		}
		again, err := ensureHeartbeatSecret(context.Background(), client, "kube-system")
		if err != nil || !bytes.Equal(again.Sign, k.Sign) {
			t.Fatalf("second agent: %q, %v; want the same key", again.Sign, err)
		}
	}
}

// Two agents start together: the one that loses the create race reads
// the winner's key.
func TestEnsureHeartbeatSecretCreateRace(t *testing.T) {
	client := fake.NewClientset()
	winner := bytes.Repeat([]byte{7}, 32)
	client.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		_ = client.Tracker().Add(&v1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: HeartbeatSecretName, Namespace: "kube-system"},
			Data:       map[string][]byte{"key": winner, "previousKey": bytes.Repeat([]byte{6}, 32)},
		})
		return true, nil, apierrors.NewAlreadyExists(schema.GroupResource{Resource: "secrets"}, HeartbeatSecretName)
	})
	k, err := ensureHeartbeatSecret(context.Background(), client, "kube-system")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Sign, winner) || len(k.Accepted) != 1 {
		t.Errorf("key %x (+%d accepted), want the winner's and its previous key", k.Sign, len(k.Accepted))
	}
}

func TestHeartbeatKeyErrors(t *testing.T) {
	client := fake.NewClientset(&v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: HeartbeatSecretName, Namespace: "ns"},
		Data:       map[string][]byte{"key": []byte("short")},
	})
	if _, err := ensureHeartbeatSecret(context.Background(), client, "ns"); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short key: %v", err)
	}
	client = fake.NewClientset()
	client.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, HeartbeatSecretName, nil)
	})
	if _, err := ensureHeartbeatSecret(context.Background(), client, "ns"); err == nil || !strings.Contains(err.Error(), "RBAC") {
		t.Errorf("forbidden: %v", err)
	}
}

func TestReadHeartbeatKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := os.WriteFile(path, []byte(strings.Repeat("k", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := readHeartbeatKeyFile(path)
	if err != nil || string(k.Sign) != strings.Repeat("k", 32) || len(k.Accepted) != 0 {
		t.Fatalf("key %q (+%d), %v", k.Sign, len(k.Accepted), err)
	}
	if err := os.WriteFile(filepath.Join(dir, "previousKey"), []byte(strings.Repeat("p", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err = readHeartbeatKeyFile(path); err != nil || len(k.Accepted) != 1 {
		t.Errorf("with previousKey: %d accepted, %v", len(k.Accepted), err)
	}
	if _, err := readHeartbeatKeyFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "--heartbeat-key-file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestPendingEvents(t *testing.T) {
	p := newPendingEvents()
	p.wait(context.Background()) // nothing pending: returns at once
	p.add(2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.wait(ctx) // gives up with its context
	p.add(-1)
	p.add(-1)
	p.wait(context.Background())
}
