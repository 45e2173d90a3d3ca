package announce

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// The heartbeat key. Agents sign every heartbeat with HMAC-SHA256 under
// this key (see announce/heartbeat). It lives in a Secret in the agents'
// namespace, created with a random key by the first agent that finds it
// missing; --heartbeat-key-file reads it from a file instead.
//
// Rotation without a flap: write the new key to "key" and the old one to
// "previousKey" in one update. Every agent signs with "key" and accepts
// both, so an agent that sees the update a moment later than its peers
// still accepts their messages and they still accept its. Remove
// "previousKey" once every agent runs with the new key.
const (
	HeartbeatSecretName   = "baremetal-node-agent-heartbeat"
	HeartbeatKeyField     = "key"
	HeartbeatPreviousKey  = "previousKey"
	heartbeatKeyBytes     = 32
	heartbeatKeyMinLength = 16
)

// heartbeatKeys is what the agent signs with and accepts.
type heartbeatKeys struct {
	Sign     []byte
	Accepted [][]byte
}

func keysFrom(key, previous []byte) (heartbeatKeys, error) {
	key, previous = bytes.TrimSpace(key), bytes.TrimSpace(previous)
	if len(key) < heartbeatKeyMinLength {
		return heartbeatKeys{}, fmt.Errorf("the heartbeat key has %d bytes; it needs at least %d (a random key, 32 bytes in hex, is created when the Secret is missing)", len(key), heartbeatKeyMinLength)
	}
	k := heartbeatKeys{Sign: key}
	if len(previous) > 0 {
		k.Accepted = [][]byte{previous}
	}
	return k, nil
}

// ensureHeartbeatSecret reads the Secret, creating it with a random key
// when it is missing. Agents starting together race to create it: the
// losers get AlreadyExists and read the winner's.
func ensureHeartbeatSecret(ctx context.Context, client kubernetes.Interface, namespace string) (heartbeatKeys, error) {
	secrets := client.CoreV1().Secrets(namespace)
	s, err := secrets.Get(ctx, HeartbeatSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		raw := make([]byte, heartbeatKeyBytes)
		if _, err := rand.Read(raw); err != nil {
			return heartbeatKeys{}, fmt.Errorf("generating a heartbeat key: %w", err)
		}
		// Hex: keysFrom trims whitespace (a key typed into a file or a
		// --from-literal ends in a newline), and raw bytes begin or end
		// with a whitespace byte one time in twenty.
		key := []byte(hex.EncodeToString(raw))
		s, err = secrets.Create(ctx, &v1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: HeartbeatSecretName, Namespace: namespace},
			Data:       map[string][]byte{HeartbeatKeyField: key},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			s, err = secrets.Get(ctx, HeartbeatSecretName, metav1.GetOptions{})
		}
	}
	if err != nil {
		return heartbeatKeys{}, fmt.Errorf("reading the heartbeat key, Secret %s/%s (the agent's RBAC must allow get and create on it): %w", namespace, HeartbeatSecretName, err)
	}
	k, err := keysFrom(s.Data[HeartbeatKeyField], s.Data[HeartbeatPreviousKey])
	if err != nil {
		return heartbeatKeys{}, fmt.Errorf("Secret %s/%s: %w", namespace, HeartbeatSecretName, err)
	}
	return k, nil
}

// watchHeartbeatSecret calls set with the keys of every change of the
// Secret. It watches that one Secret by name (RBAC grants no other).
func watchHeartbeatSecret(ctx context.Context, client kubernetes.Interface, namespace string, set func(heartbeatKeys, error)) (informers.SharedInformerFactory, error) {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", HeartbeatSecretName).String()
		}))
	inf := f.Core().V1().Secrets().Informer()
	if err := inf.SetTransform(dropManagedFields); err != nil {
		return nil, fmt.Errorf("watching the heartbeat Secret: %w", err)
	}
	apply := func(obj any) {
		if s, ok := obj.(*v1.Secret); ok {
			set(keysFrom(s.Data[HeartbeatKeyField], s.Data[HeartbeatPreviousKey]))
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    apply,
		UpdateFunc: func(_, obj any) { apply(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watching the heartbeat Secret: %w", err)
	}
	f.Start(ctx.Done())
	return f, nil
}

// readHeartbeatKeyFile reads --heartbeat-key-file, and "previousKey" next
// to it if present (a mounted Secret volume holds both).
func readHeartbeatKeyFile(path string) (heartbeatKeys, error) {
	key, err := os.ReadFile(path)
	if err != nil {
		return heartbeatKeys{}, fmt.Errorf("reading --heartbeat-key-file: %w", err)
	}
	prev, err := os.ReadFile(filepath.Join(filepath.Dir(path), HeartbeatPreviousKey))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return heartbeatKeys{}, fmt.Errorf("reading the previous heartbeat key next to --heartbeat-key-file: %w", err)
	}
	k, err := keysFrom(key, prev)
	if err != nil {
		return heartbeatKeys{}, fmt.Errorf("--heartbeat-key-file %s: %w", path, err)
	}
	return k, nil
}
