#!/usr/bin/env bash
# Fetch the Apache Kafka broker and console tools from Maven Central into a
# version-keyed cache outside the clone, so a second run reuses the jars.
set -euo pipefail

version="${KAFKA_VERSION:-4.1.1}"
cache="${STREAMCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamctl}"
dest="$cache/kafka-$version"

# Bump when the dependency list below changes, so old caches are refreshed.
manifest="kafka-$version+log4j-slf4j-impl-2.24.3"
if [ -f "$dest/.complete" ] && [ "$(cat "$dest/.complete")" = "$manifest" ]; then
    echo "kafka $version: cached in $dest"
    exit 0
fi

command -v mvn >/dev/null || { echo "error: Maven (mvn) is needed to fetch Kafka jars; install it (apt-get install maven)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.streamctl</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
echo "kafka $version: fetching jars from Maven Central into $dest"
rm -rf "$dest.partial"
mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$dest.partial/libs"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "$manifest" > "$dest/.complete"
echo "kafka $version: $(ls "$dest/libs" | wc -l) jars in $dest/libs"
