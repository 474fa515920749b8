#!/usr/bin/env bash
# Re-fetches the GraphiQL page's third-party files from the npm registry at the pinned
# versions below. latchkey embeds them in its binary, so the page needs no other origin.
# To upgrade: change a version, run this script, check the page renders, commit.
set -euo pipefail

GRAPHIQL=4.0.3
REACT=18.3.1

here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" >/dev/null
for package in "graphiql-$GRAPHIQL" "react-$REACT" "react-dom-$REACT"; do
    mkdir "$package"
    tar -xzf "$package.tgz" -C "$package"
done
cp "graphiql-$GRAPHIQL/package/graphiql.min.js" "graphiql-$GRAPHIQL/package/graphiql.min.css" "$here/"
cp "react-$REACT/package/umd/react.production.min.js" "$here/"
cp "react-dom-$REACT/package/umd/react-dom.production.min.js" "$here/"
cp "graphiql-$GRAPHIQL/package/LICENSE" "$here/LICENSE.graphiql"
cp "react-$REACT/package/LICENSE" "$here/LICENSE.react"
# The bundles end with a source-map comment; the maps are not shipped.
sed -i '/^\/\/# sourceMappingURL=/d; /^\/\*# sourceMappingURL=/d' "$here"/*.min.js "$here"/*.min.css
echo "GraphiQL $GRAPHIQL and React $REACT are in $here"
