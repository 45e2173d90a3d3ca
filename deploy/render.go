// Package deploy holds the kustomize manifests (base/, overlays/) and helpers
// that turn them into objects for tests: the manifests are checked here and
// applied to the lab API server by the end-to-end suite.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Render builds the kustomization in dir with `kubectl kustomize` (the
// kustomize built into kubectl, so no separate tool; see ToolPath) and
// returns its objects in output order.
func Render(dir string) ([]*unstructured.Unstructured, error) {
	kubectl, err := ToolPath("kubectl")
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", dir, err)
	}
	return run(kubectl, "kustomize", dir)
}

// RenderChart renders the Helm chart in dir with `helm template` as release
// name in namespace, with extra helm arguments such as
// "--set-file", "cloudConfig=my.yaml", and returns its objects.
func RenderChart(dir, name, namespace string, args ...string) ([]*unstructured.Unstructured, error) {
	helm, err := ToolPath("helm")
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", dir, err)
	}
	return run(helm, append([]string{"template", name, dir, "--namespace", namespace}, args...)...)
}

// run runs a renderer and decodes what it prints.
func run(tool string, args ...string) ([]*unstructured.Unstructured, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(tool, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", filepath.Base(tool), strings.Join(args, " "), err, stderr.String())
	}
	return Decode(stdout.Bytes())
}

// Decode splits multi-document YAML into objects; empty documents are skipped.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("document %d has no kind or apiVersion", i)
		}
		objs = append(objs, u)
	}
}

// localBase is deploy/base in this checkout, found from this file's
// compile-time location.
func localBase() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate deploy/base: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "base"), nil
}

// kustomization is the part of kustomize's format the manifests use.
type kustomization struct {
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name      string   `json:"name"`
		Namespace string   `json:"namespace"`
		Behavior  string   `json:"behavior"`
		Files     []string `json:"files"`
	} `json:"configMapGenerator"`
	Images []struct {
		Name   string `json:"name"`
		NewTag string `json:"newTag"`
	} `json:"images"`
}

// RemoteBase is the base as overlays outside this repository name it: a
// kustomize remote target, pinned with ?ref= to the release whose image the
// overlay runs.
const RemoteBase = "github.com/cloud-provider-baremetal/cloud-provider-baremetal//deploy/base"

// Read builds the kustomization in dir without kustomize, for the fields the
// manifests use (resources, configMapGenerator, images; generatorOptions is
// taken to disable name hashes). Any other field is an error, so Read never
// silently disagrees with kustomize; the tests check it agrees with Render.
// A resource naming RemoteBase (any ref) is read from this checkout's
// deploy/base: tests do not fetch from the network.
func Read(dir string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var fields map[string]any
	if err := yaml.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	for field := range fields {
		if !slices.Contains([]string{"apiVersion", "kind", "resources", "configMapGenerator", "generatorOptions", "images"}, field) {
			return nil, fmt.Errorf("%s/kustomization.yaml uses %q, which deploy.Read does not implement", dir, field)
		}
	}
	var k kustomization
	if err := yaml.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range k.Resources {
		path := filepath.Join(dir, r)
		if remote, _, _ := strings.Cut(strings.TrimPrefix(r, "https://"), "?"); remote == RemoteBase {
			base, err := localBase()
			if err != nil {
				return nil, err
			}
			path = base
		}
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			sub, err := Read(path)
			if err != nil {
				return nil, err
			}
			objs = append(objs, sub...)
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		docs, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		objs = append(objs, docs...)
	}
	for _, g := range k.ConfigMapGenerator {
		cm := map[string]any{}
		for _, f := range g.Files {
			data, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return nil, err
			}
			cm[filepath.Base(f)] = string(data)
		}
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": cm}}
		u.SetName(g.Name)
		u.SetNamespace(g.Namespace)
		if g.Behavior == "replace" {
			objs = slices.DeleteFunc(objs, func(o *unstructured.Unstructured) bool {
				return o.GetKind() == "ConfigMap" && o.GetName() == g.Name && o.GetNamespace() == g.Namespace
			})
		}
		objs = append(objs, u)
	}
	for _, img := range k.Images {
		for _, o := range objs {
			containers, found, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			if !found {
				continue
			}
			for _, c := range containers {
				c, _ := c.(map[string]any)
				image, _ := c["image"].(string)
				if name, _, _ := strings.Cut(image, ":"); name == img.Name && img.NewTag != "" {
					c["image"] = name + ":" + img.NewTag
				}
			}
			if err := unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers"); err != nil {
				return nil, err
			}
		}
	}
	return objs, nil
}
