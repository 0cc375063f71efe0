package top

import (
	"context"
	"time"

	tea "github.com/charmbracelet/bubbletea"
)

// Sampler reads one sample; *Collector is the real one.
type Sampler interface {
	Sample(ctx context.Context) *Sample
}

// SampleMsg carries a new sample into the model.
type SampleMsg struct{ Sample *Sample }

// tickMsg asks for the next sample.
type tickMsg struct{}

// Model is the bubbletea model of the live view: it samples every
// Interval, keeps the last two samples for rates and quits on q, Esc or
// Ctrl-C.
type Model struct {
	Sampler  Sampler
	Source   Source
	Interval time.Duration

	prev, cur *Sample
	width     int
	paused    bool
}

// NewModel returns a model sampling s every every (DefaultInterval when 0).
func NewModel(s Sampler, src Source, every time.Duration) Model {
	if every <= 0 {
		every = DefaultInterval
	}
	return Model{Sampler: s, Source: src, Interval: every}
}

// DefaultInterval is the time between samples when none is given.
const DefaultInterval = time.Second

// Init takes the first sample at once.
func (m Model) Init() tea.Cmd { return m.sample() }

// sample reads the next sample off the UI goroutine, bounded by the
// interval (at least 2 s) so a hung herald cannot stall the view.
func (m Model) sample() tea.Cmd {
	if m.Sampler == nil {
		return nil
	}
	s, every := m.Sampler, m.Interval
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), max(every, 2*time.Second))
		defer cancel()
		return SampleMsg{s.Sample(ctx)}
	}
}

// Update handles samples, ticks, keys and resizes.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case SampleMsg:
		if !m.paused {
			m.prev, m.cur = m.cur, msg.Sample
		}
		every := m.Interval
		return m, tea.Tick(every, func(time.Time) tea.Msg { return tickMsg{} })
	case tickMsg:
		return m, m.sample()
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "esc", "ctrl+c":
			return m, tea.Quit
		case "p", " ":
			m.paused = !m.paused
		}
	case tea.WindowSizeMsg:
		m.width = msg.Width
	}
	return m, nil
}

// View renders the table and a line of keys.
func (m Model) View() string {
	help := "q quit · p pause"
	if m.paused {
		help = "PAUSED · p resume · q quit"
	}
	return Render(m.Source, m.prev, m.cur, m.width) + "\n" + help + "\n"
}

var _ tea.Model = Model{}
