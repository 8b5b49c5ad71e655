#!/usr/bin/env bash
# Builds (once per version) the binaries the cluster suite runs: the Kubernetes control plane from
# test/cluster/k8s (k8s.io/kubernetes with its staging modules pinned), etcd, and kwok (fake nodes).
# They are cached by version under $NVCF_CLUSTER_CACHE (default ~/.cache/nvcf-cluster), so a warm run
# only checks that they are there. Go runs one package at a time (-p=1 unless GO_PARALLEL says otherwise)
# so a 2-core machine stays usable while it builds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${NVCF_CLUSTER_CACHE:-$HOME/.cache/nvcf-cluster}"
k8s_version="v1.35.4"    # the stack's default cluster minor version is 1.35 (lib/config.ts)
etcd_version="v3.6.16"
kwok_version="v0.7.0"
export GOFLAGS="-p=${GO_PARALLEL:-1}"
export CGO_ENABLED=0

# build NAME VERSION DIR LDFLAGS PACKAGE...: go build PACKAGEs into $cache/NAME-VERSION unless already there.
build() {
  local name="$1" version="$2" dir="$3" ldflags="$4"; shift 4
  local out="$cache/$name-$version"
  if [ -f "$out/.complete" ]; then echo "cluster: $name $version cached in $out"; return; fi
  mkdir -p "$out"
  local start=$SECONDS
  echo "cluster: building $name $version into $out (cold builds take long on 2 cores)"
  (cd "$dir" && go build -trimpath -ldflags="-s -w $ldflags" -o "$out/" "$@")
  echo "$((SECONDS - start))" > "$out/.build-seconds"
  touch "$out/.complete"
  echo "cluster: $name $version built in $((SECONDS - start)) s"
}

# The version the components report (/version, their logs), as a release build stamps it.
k8s_stamp="-X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=35 -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"
build kubernetes "$k8s_version" "$here/k8s" "$k8s_stamp" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
# go names the binary of go.etcd.io/etcd/server/v3 'server'; the control plane starts it as etcd.
build etcd "$etcd_version" "$here/etcd" "" go.etcd.io/etcd/server/v3
[ -x "$cache/etcd-$etcd_version/etcd" ] || mv "$cache/etcd-$etcd_version/server" "$cache/etcd-$etcd_version/etcd"
build kwok "$kwok_version" "$here/kwok" "" sigs.k8s.io/kwok/cmd/kwok
