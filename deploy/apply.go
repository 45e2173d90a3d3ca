package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// IdentityKinds are the kinds that give the binaries their identity and
// permissions: what a lab without a kubelet applies so that it can run the
// CCM and the agents as processes with the manifests' ServiceAccounts.
var IdentityKinds = []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// FieldManager owns the applied fields; required.
	FieldManager string
	// DryRun asks the API server to validate and admit the objects
	// without persisting them.
	DryRun bool
	// Kinds, if not empty, limits Apply to objects of these kinds; the
	// others are skipped.
	Kinds []string
}

// Apply server-side applies objs through cfg in the given order (so a
// Namespace listed first exists before the objects in it), forcing
// ownership of conflicting fields. It tries every object and returns the
// errors of all that failed, and a summary of what it applied such as
// "1 Namespace, 2 ServiceAccounts".
func Apply(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured, opts ApplyOptions) (string, error) {
	if opts.FieldManager == "" {
		return "", errors.New("server-side apply needs a field manager")
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return "", fmt.Errorf("creating a dynamic client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return "", fmt.Errorf("creating a discovery client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	applyOpts := metav1.ApplyOptions{FieldManager: opts.FieldManager, Force: true}
	if opts.DryRun {
		applyOpts.DryRun = []string{metav1.DryRunAll}
	}

	var errs []error
	counts := map[string]int{}
	var kinds []string
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		if len(opts.Kinds) > 0 && !slices.Contains(opts.Kinds, gvk.Kind) {
			continue
		}
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			errs = append(errs, fmt.Errorf("the API server does not serve %s %s: %w", gvk.Kind, describe(o), err))
			continue
		}
		var r dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			r = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := r.Apply(ctx, o.GetName(), o, applyOpts); err != nil {
			errs = append(errs, fmt.Errorf("applying %s %s: %w", gvk.Kind, describe(o), err))
			continue
		}
		if counts[gvk.Kind] == 0 {
			kinds = append(kinds, gvk.Kind)
		}
		counts[gvk.Kind]++
	}
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		if counts[k] == 1 {
			parts = append(parts, "1 "+k)
		} else {
			parts = append(parts, fmt.Sprintf("%d %ss", counts[k], k))
		}
	}
	return strings.Join(parts, ", "), errors.Join(errs...)
}

// describe names o as namespace/name, or name if it is cluster-scoped.
func describe(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return ns + "/" + o.GetName()
	}
	return o.GetName()
}
