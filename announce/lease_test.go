package announce

import (
	"context"
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestLeaseKeeper(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	k := newLeaseKeeper(client, "kube-system", "n1", clk, 3*time.Second)

	if held, ever, _ := k.state(); held || ever {
		t.Fatalf("before the first renewal: held=%v everHeld=%v", held, ever)
	}
	info := AgentInfo{MACs: []string{"02:00:00:00:00:01"}, UnreadyPools: []string{"lan"}}
	if err := k.renew(ctx, false, info, []string{"lan"}); err != nil {
		t.Fatal(err)
	}
	l, err := client.CoordinationV1().Leases("kube-system").Get(ctx, "baremetal-agent-n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *l.Spec.HolderIdentity != "n1" || *l.Spec.LeaseDurationSeconds != 3 {
		t.Errorf("lease spec %+v", l.Spec)
	}
	leaving, got := leaseInfo(l)
	if leaving || got.MACs[0] != info.MACs[0] || got.UnreadyPools[0] != "lan" {
		t.Errorf("published leaving=%v info=%+v, want %+v", leaving, got, info)
	}
	if held, _, _ := k.state(); !held {
		t.Fatal("not held right after a renewal")
	}
	if err := k.renew(ctx, true, AgentInfo{}, nil); err != nil {
		t.Fatal(err)
	}
	l, _ = client.CoordinationV1().Leases("kube-system").Get(ctx, "baremetal-agent-n1", metav1.GetOptions{})
	if leaving, got := leaseInfo(l); !leaving || len(got.MACs) != 0 {
		t.Errorf("after renewing as leaving: leaving=%v info=%+v", leaving, got)
	}

	tests := []struct {
		name            string
		err             error
		wantUnreachable bool
	}{
		{"connection refused", errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"), true},
		{"service unavailable", apierrors.NewServiceUnavailable("etcd down"), true},
		{"server timeout", apierrors.NewServerTimeout(schema.GroupResource{Resource: "leases"}, "update", 1), true},
		{"forbidden", apierrors.NewForbidden(schema.GroupResource{Resource: "leases"}, "baremetal-agent-n1", errors.New("RBAC")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, tt.err
			})
			defer func() { client.ReactionChain = client.ReactionChain[1:] }()
			clk.SetTime(clk.Now().Add(4 * time.Second))
			if err := k.renew(ctx, false, info, []string{"lan"}); err == nil {
				t.Fatal("renewal succeeded against a failing API server")
			}
			held, ever, unreachable := k.state()
			if held || !ever || unreachable != tt.wantUnreachable {
				t.Errorf("held=%v everHeld=%v unreachable=%v, want false true %v", held, ever, unreachable, tt.wantUnreachable)
			}
		})
	}
	if err := k.delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoordinationV1().Leases("kube-system").Get(ctx, "baremetal-agent-n1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("lease still there after delete: %v", err)
	}
}
