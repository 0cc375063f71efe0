package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// completionCmd is `herald completion SHELL`: cobra's generated shell
// completion, as its built-in command gives, with install examples. Having
// a command of that name replaces cobra's default one.
func completionCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script for herald",
		Long: `completion prints the script that makes the shell complete herald's commands, flags
and flag values. Load it in the current shell, or install it once as below.`,
		Example: `  source <(herald completion bash)                                   # this shell only
  herald completion bash > /etc/bash_completion.d/herald              # every bash
  herald completion zsh > "${fpath[1]}/_herald"                       # zsh (compinit on)
  herald completion fish > ~/.config/fish/completions/herald.fish`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return &exitError{2, fmt.Errorf("unknown shell %q: want bash, zsh, fish or powershell", args[0])}
		},
	}
}

// toolCmds are the operator's commands beside run and check: test, top,
// tap and completion. It also gives `herald --help` and `herald version
// --help` their examples, so that every command's help has some.
func toolCmds(root *cobra.Command) []*cobra.Command {
	if root.Example == "" {
		root.Example = `  herald check --config deploy/herald.yaml        # every problem of a config, with positions
  herald run --config deploy/herald.yaml          # run every stage
  herald test deploy/tests/*.yaml                 # pipeline unit tests
  herald top                                      # live view of a running herald
  herald tap --stage resolved --filter 'severity <= 3'
  herald completion bash > /etc/bash_completion.d/herald`
	}
	for _, c := range root.Commands() {
		if c.Name() == "version" && c.Example == "" {
			c.Example = "  herald version"
		}
	}
	return []*cobra.Command{testCmd(), topCmd(), tapCmd(), completionCmd(root)}
}
