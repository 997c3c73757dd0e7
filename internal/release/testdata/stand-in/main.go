// Command stand-in takes strait's place in the release test: a static binary to package.
package main

import "fmt"

func main() { fmt.Println("strait stand-in") }
